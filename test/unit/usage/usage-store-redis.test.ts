import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { RedisTimeoutError } from '../../../src/cache/redis-client.js';
import { createUsageCounter, identityTag } from '../../../src/usage/usage-counter.js';
import { createRedisUsageStore } from '../../../src/usage/usage-store-redis.js';
import { createUsageWindows } from '../../../src/usage/usage-windows.js';
import { createFakeClock } from '../../helpers/clock.js';
import { redisMissing, useRedisServer } from '../../helpers/redis.js';

/**
 * The usage counter on a real redis-server whose answers come late: `CLIENT PAUSE ... WRITE`
 * holds the script until `CLIENT UNPAUSE`, then runs it, so the write is applied after the
 * counter's command timeout has called it failed. Windows run on an injected clock.
 */
describe('usage counts in Redis', { skip: redisMissing }, () => {
  const windows = createUsageWindows('UTC');
  // Next year: a window that ended before Redis's own clock would have its keys expire at once.
  const year = new Date().getUTCFullYear() + 1;
  const COMMAND_TIMEOUT_MS = 300;
  const { connect } = useRedisServer();

  /** A replica's counter on its own connection, and a second connection to look at Redis with. */
  async function setup(startMs: number, maxIdentities?: number) {
    const namespace = `u${randomBytes(6).toString('hex')}`;
    const clock = createFakeClock(startMs);
    const errors: unknown[] = [];
    const writer = await connect();
    const store = createRedisUsageStore({ redis: writer, namespace, commandTimeoutMs: COMMAND_TIMEOUT_MS });
    const counter = createUsageCounter({ windows, store, syncIntervalMs: 60_000, now: clock.now, maxIdentities, onSyncError: (e) => errors.push(e) });
    const look = await connect();
    const keyOf = (identity: string, window: string) => `${namespace}:usage:{${identityTag(identity)}}:${window}`;
    /** What Redis holds for one window: requests and total tokens. */
    const held = async (identity: string, window: string) => {
      const v = await look.hmget(keyOf(identity, window), 'r', 't');
      return { requests: Number(v[0] ?? 0), total: Number(v[1] ?? 0) };
    };
    /** Holds every write Redis gets until `resume`: they run then, answered after the timeout. */
    const pauseWrites = async () => {
      await look.call('CLIENT', 'PAUSE', '10000', 'WRITE');
      return async () => {
        await look.call('CLIENT', 'UNPAUSE');
        // Answered after the held write on the same connection: the write has run.
        await writer.ping();
      };
    };
    return { namespace, clock, errors, counter, look, keyOf, held, pauseWrites };
  }

  it('claim-seen-by-replicas: a chat id one replica claimed is seen claimed by another, for that identity only', async () => {
    const namespace = `u${randomBytes(6).toString('hex')}`;
    const [one, two] = await Promise.all([connect(), connect()]);
    const first = createRedisUsageStore({ redis: one, namespace, commandTimeoutMs: COMMAND_TIMEOUT_MS });
    const second = createRedisUsageStore({ redis: two, namespace, commandTimeoutMs: COMMAND_TIMEOUT_MS });
    assert.equal(await second.isClaimed('tag-a', 'chat:1'), false);
    assert.equal(await first.claimOnce('tag-a', 'chat:1'), true);
    assert.equal(await second.isClaimed('tag-a', 'chat:1'), true);
    assert.equal(await second.isClaimed('tag-b', 'chat:1'), false, 'another identity');
    assert.equal(await second.claimOnce('tag-a', 'chat:1'), false);
  });

  it('late-answer-counted-once: a write Redis applied but answered after the timeout is not added again by the next sync', async () => {
    const { counter, errors, held, pauseWrites } = await setup(Date.UTC(year, 4, 10, 12, 0));
    // A read first, so the script is loaded and the held call is the write itself.
    assert.equal(await counter.sync('jwt:a'), true);
    counter.record('jwt:a', { requests: 1, input: 11, output: 17, total: 28 });
    const resume = await pauseWrites();
    assert.equal(await counter.sync('jwt:a'), false, 'the answer did not come in time');
    assert.ok(errors[0] instanceof RedisTimeoutError, String(errors[0]));
    await resume();
    assert.deepEqual(await held('jwt:a', `day:${year}-05-10`), { requests: 1, total: 28 }, 'Redis applied the write all the same');

    counter.record('jwt:a', { requests: 1, total: 5 });
    assert.equal(await counter.sync('jwt:a'), true);
    assert.deepEqual(await held('jwt:a', `day:${year}-05-10`), { requests: 2, total: 33 }, 'each count once in the day');
    assert.deepEqual(await held('jwt:a', `month:${year}-05`), { requests: 2, total: 33 }, 'and in the month');
    assert.equal(counter.view('jwt:a').day.total, 33, 'the view agrees');
    assert.equal(counter.unsynced, 0);
    await counter.close();
  });

  it('late-answer-across-midnight: a day left while its write was answered late is counted once, in its own day', async () => {
    const { counter, clock, held, pauseWrites } = await setup(Date.UTC(year, 4, 31, 23, 59, 59, 900));
    assert.equal(await counter.sync('jwt:a'), true);
    counter.record('jwt:a', { requests: 1, total: 28 });
    const resume = await pauseWrites();
    assert.equal(await counter.sync('jwt:a'), false);
    clock.advance(200);
    // June 1st: a new day and a new month while May's counts have an unknown fate.
    counter.record('jwt:a', { requests: 1, total: 5 });
    await resume();
    await counter.close();
    assert.deepEqual(await held('jwt:a', `day:${year}-05-31`), { requests: 1, total: 28 });
    assert.deepEqual(await held('jwt:a', `month:${year}-05`), { requests: 1, total: 28 });
    assert.deepEqual(await held('jwt:a', `day:${year}-06-01`), { requests: 1, total: 5 });
    assert.deepEqual(await held('jwt:a', `month:${year}-06`), { requests: 1, total: 5 });
    assert.equal(counter.unsynced, 0, 'the shutdown flush wrote everything');
  });

  it('late-answer-of-a-dropped-identity: an identity the LRU dropped while its write was answered late is counted once', async () => {
    const { counter, held, pauseWrites } = await setup(Date.UTC(year, 4, 10, 12, 0), 1);
    assert.equal(await counter.sync('jwt:a'), true);
    counter.record('jwt:a', { requests: 1, total: 28 });
    const resume = await pauseWrites();
    const first = counter.sync('jwt:a');
    // Room for one identity: b takes a's place while a's write is out.
    counter.record('jwt:b', { requests: 1, total: 3 });
    assert.equal(await first, false);
    await resume();
    await counter.flush();
    assert.deepEqual(await held('jwt:a', `day:${year}-05-10`), { requests: 1, total: 28 });
    assert.deepEqual(await held('jwt:a', `month:${year}-05`), { requests: 1, total: 28 });
    assert.deepEqual(await held('jwt:b', `day:${year}-05-10`), { requests: 1, total: 3 });
    // a comes back: counted on from what Redis holds, its earlier write not sent again.
    counter.record('jwt:a', { requests: 1, total: 2 });
    await counter.flush();
    assert.deepEqual(await held('jwt:a', `day:${year}-05-10`), { requests: 2, total: 30 });
    assert.equal(counter.unsynced, 0);
    await counter.close();
  });

  it('writer-key-per-identity-and-replica: the seq of a replica\'s last write of an identity is one small key, kept as long as the month it counted in', async () => {
    const { namespace, counter, look, keyOf } = await setup(Date.UTC(year, 4, 10, 12, 0));
    assert.equal(await counter.sync('jwt:reader'), true);
    for (let i = 0; i < 3; i++) {
      counter.record('jwt:a', { requests: 1, total: 28 });
      assert.equal(await counter.sync('jwt:a'), true);
    }
    const keys = await look.keys(`${namespace}:usage:*:writer:*`);
    assert.equal(keys.length, 1, `one key for a, none for a mere read: ${keys.join(', ')}`);
    const key = keys[0] as string;
    assert.ok(key.startsWith(`${namespace}:usage:{${identityTag('jwt:a')}}:writer:`), key);
    assert.match(String(await look.get(key)), /^\d+$/);
    assert.equal(await look.call('PEXPIRETIME', key), await look.call('PEXPIRETIME', keyOf('jwt:a', `month:${year}-05`)));
    await counter.close();
  });
});
