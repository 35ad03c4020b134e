import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createRedisTokenStore, redisNamespace } from '../../../src/cache/redis-token-store.js';
import { createTokenSealer } from '../../../src/cache/token-crypto.js';
import type { CozeToken } from '../../../src/coze/token-client.js';
import { freePort } from '../../helpers/cli-process.js';
import { redisMissing, startRedis, type RedisServer } from '../../helpers/redis.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const inFuture = (seconds: number) => Math.floor(Date.now() / 1000) + seconds;
const always = () => true;

/** What a Redis reader without the key sees: every key and every field of every hash. */
async function dump(redis: Redis, pattern: string): Promise<string> {
  const keys = await redis.keys(pattern);
  const values = await Promise.all(keys.map(async (k) => ((await redis.type(k)) === 'hash' ? JSON.stringify(await redis.hgetall(k)) : String(await redis.get(k)))));
  return keys.join('\n') + values.join('\n');
}

describe('redis token store', { skip: redisMissing }, () => {
  let server: RedisServer;
  let redis: Redis;
  let other: Redis;
  let subscriber: Redis;
  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    other = new Redis(server.url);
    subscriber = new Redis(server.url);
    await new Promise((r) => subscriber.once('ready', r));
  });
  after(async () => {
    redis?.disconnect();
    other?.disconnect();
    subscriber?.disconnect();
    await server?.stop();
  });

  const ns = () => `t:${randomBytes(6).toString('hex')}`;
  const store = (options: {
    redis?: Redis;
    key?: Buffer;
    previous?: Buffer[];
    namespace: string;
    lockTtlMs?: number;
    commandTimeoutMs?: number;
    giveUpAfterMs?: number;
    safetyPollMs?: number;
    unshared?: () => void;
    errors?: string[];
  }) =>
    createRedisTokenStore({
      redis: options.redis ?? redis,
      subscriber,
      sealer: createTokenSealer(options.key ?? KEY, options.previous ?? []),
      namespace: options.namespace,
      lockTtlMs: options.lockTtlMs ?? 5000,
      commandTimeoutMs: options.commandTimeoutMs ?? 1000,
      giveUpAfterMs: options.giveUpAfterMs ?? 4000,
      ...(options.safetyPollMs ? { safetyPollMs: options.safetyPollMs } : {}),
      ...(options.unshared ? { onUnsharedMint: options.unshared } : {}),
      // The operation and the error's first word (a Redis error code): never a key or a token.
      ...(options.errors ? { onError: (operation: string, err: unknown) => options.errors?.push(`${operation} ${String((err as Error).message).split(' ')[0]}`) } : {}),
    });
  const KEY = randomBytes(32);

  it('held-mint-serves-stored: a mint refused by the breaker still gets the token another replica stored, and a miss takes no lock', async () => {
    const namespace = ns();
    const token = { accessToken: 'czs_from_a', expiresAt: inFuture(900) };
    await store({ namespace }).mintOnce('alice', async () => token, always);
    const held = new Error('held');
    const replicaB = store({ namespace });
    const got = await replicaB.mintOnce('alice', async () => assert.fail('no mint'), always, () => held);
    assert.equal(got.accessToken, 'czs_from_a', 'served from Redis although the mint is held');
    await assert.rejects(replicaB.mintOnce('bob', async () => assert.fail('no mint'), always, () => held), (err: unknown) => err === held);
    assert.deepEqual(await redis.keys(`${namespace}:*lock*`), [], 'no lock taken for the held miss');
  });

  it('stores tokens encrypted: neither the token nor the session name can be read without the key', async () => {
    const namespace = ns();
    const token = { accessToken: `czs_${randomBytes(24).toString('base64url')}`, expiresAt: inFuture(900) };
    await store({ namespace }).mintOnce('user-42@example.com', async () => token, always);
    const raw = await dump(redis, `${namespace}:*`);
    assert.ok(raw.length > 0, 'something was stored');
    assert.ok(!raw.includes(token.accessToken), 'no plaintext token');
    assert.ok(!raw.includes(token.accessToken.slice(4, 20)), 'no fragment of it either');
    assert.ok(!raw.includes('user-42'), 'no session name in keys or values');

    let minted = 0;
    const wrongKey = await store({ namespace, key: randomBytes(32) }).mintOnce('user-42@example.com', async () => ({ accessToken: `other-${++minted}`, expiresAt: inFuture(900) }), always);
    assert.equal(minted, 1, 'a reader with another key cannot use the stored token: it mints');
    assert.notEqual(wrongKey.accessToken, token.accessToken);
  });

  it('takes the TTL from expires_in', async () => {
    const namespace = ns();
    await store({ namespace }).mintOnce('ttl', async () => ({ accessToken: 'czs_ttl', expiresAt: inFuture(120) }), always);
    const [key] = await redis.keys(`${namespace}:*:token`);
    const ttl = await redis.pttl(key as string);
    assert.ok(ttl > 115_000 && ttl <= 120_000, `ttl ${ttl} ms`);
  });

  it('rotates keys: a token sealed with a previous key still opens; new tokens use the current key', async () => {
    const namespace = ns();
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const token = { accessToken: 'czs_before_rotation', expiresAt: inFuture(900) };
    await store({ namespace, key: oldKey }).mintOnce('rot', async () => token, always);
    const rotated = store({ namespace, key: newKey, previous: [oldKey] });
    const got = await rotated.mintOnce('rot', async () => assert.fail('no mint: the old key still opens it'), always);
    assert.equal(got.accessToken, token.accessToken);
  });

  it('namespaces by Coze app and base URL', async () => {
    const a = redisNamespace('csg', 'app-1', 'https://api.coze.cn');
    assert.notEqual(a, redisNamespace('csg', 'app-2', 'https://api.coze.cn'));
    assert.notEqual(a, redisNamespace('csg', 'app-1', 'https://api.coze.com'));
    assert.notEqual(a, redisNamespace('csg', 'app-1', 'https://api.coze.cn', 'account-9'));
    let minted = 0;
    const mint = async () => ({ accessToken: `czs_${++minted}`, expiresAt: inFuture(900) });
    await store({ namespace: `${a}:${ns()}` }).mintOnce('same-user', mint, always);
    await store({ namespace: `${redisNamespace('csg', 'app-2', 'https://api.coze.cn')}:${ns()}` }).mintOnce('same-user', mint, always);
    assert.equal(minted, 2, 'another app never reads the first app\'s token');
  });

  it('one mint across stores on separate connections; waiters take the winner\'s token', async () => {
    const namespace = ns();
    let minted = 0;
    const slowMint = async (): Promise<CozeToken> => {
      minted += 1;
      await sleep(150);
      return { accessToken: `czs_once_${minted}`, expiresAt: inFuture(900) };
    };
    const replicas = [store({ namespace }), store({ namespace, redis: other }), store({ namespace })];
    const got = await Promise.all(replicas.map((r) => r.mintOnce('shared', slowMint, always)));
    assert.equal(minted, 1);
    assert.ok(got.every((t) => t.accessToken === 'czs_once_1'));
  });

  it('the lock is renewed while a mint outlives its TTL, so no second mint starts', async () => {
    const namespace = ns();
    let minted = 0;
    const longMint = async (): Promise<CozeToken> => {
      minted += 1;
      await sleep(900);
      return { accessToken: `czs_long_${minted}`, expiresAt: inFuture(900) };
    };
    const first = store({ namespace, lockTtlMs: 300 }).mintOnce('long', longMint, always);
    await sleep(50);
    const second = store({ namespace, lockTtlMs: 300, redis: other }).mintOnce('long', longMint, always);
    const [a, b] = await Promise.all([first, second]);
    assert.equal(minted, 1, 'the lock held for 3 TTLs');
    assert.equal(a.accessToken, b.accessToken);
  });

  it('a holder whose lock was lost never overwrites the newer token of the next holder', async () => {
    const namespace = ns();
    let unshared = 0;
    let releaseStale: (t: CozeToken) => void = () => undefined;
    const stale = store({ namespace, unshared: () => (unshared += 1) }).mintOnce('fenced', () => new Promise<CozeToken>((r) => (releaseStale = r)), always);
    await sleep(50);
    // The lock lapses (a GC pause, a partition): another replica takes it and stores its token.
    const [lock] = await redis.keys(`${namespace}:*:lock`);
    await redis.del(lock as string);
    const fresh = await store({ namespace, redis: other }).mintOnce('fenced', async () => ({ accessToken: 'czs_newer', expiresAt: inFuture(900) }), always);
    releaseStale({ accessToken: 'czs_stale_holder', expiresAt: inFuture(1200) });
    const staleToken = await stale;
    assert.equal(staleToken.accessToken, 'czs_stale_holder', 'its caller still gets a working token');
    assert.equal(unshared, 1, 'counted as unshared');
    const now = await store({ namespace }).mintOnce('fenced', async () => assert.fail('no mint'), always);
    assert.equal(now.accessToken, fresh.accessToken, 'the newer holder\'s token stayed');
  });

  it('invalidateIfSame is a compare-and-delete across replicas', async () => {
    const namespace = ns();
    const a = store({ namespace });
    const b = store({ namespace, redis: other });
    const t1 = await a.mintOnce('cad', async () => ({ accessToken: 'czs_t1', expiresAt: inFuture(900) }), always);
    assert.equal(await b.invalidateIfSame('cad', 'czs_not_it'), false);
    assert.equal(await b.invalidateIfSame('cad', t1.accessToken), true);
    const t2 = await a.mintOnce('cad', async () => ({ accessToken: 'czs_t2', expiresAt: inFuture(900) }), always);
    // A late racer still holding t1 must not drop t2.
    assert.equal(await b.invalidateIfSame('cad', t1.accessToken), false);
    assert.equal((await b.mintOnce('cad', async () => assert.fail('no mint'), always)).accessToken, t2.accessToken);
  });

  /** A mint the test settles by hand; `started` resolves once it was called. */
  function manualMint(accessToken: string) {
    let calls = 0;
    let settle: { resolve: (t: CozeToken) => void; reject: (e: unknown) => void } | undefined;
    let onStart: () => void = () => undefined;
    const started = new Promise<void>((r) => (onStart = r));
    return {
      started,
      get calls() {
        return calls;
      },
      mint: () =>
        new Promise<CozeToken>((resolve, reject) => {
          calls += 1;
          settle = { resolve, reject };
          onStart();
        }),
      resolve: () => settle?.resolve({ accessToken, expiresAt: inFuture(900) }),
      reject: (err: unknown) => settle?.reject(err),
    };
  }
  const commandCalls = async (command: string) => Number(/calls=(\d+)/.exec((await redis.info('commandstats')).split('\n').find((l) => l.startsWith(`cmdstat_${command}:`)) ?? '')?.[1] ?? 0);

  it('a waiter never mints while the holder is alive, however long its mint takes (issue 17)', async () => {
    const namespace = ns();
    const holderMint = manualMint('czs_slow_holder');
    const holder = store({ namespace, lockTtlMs: 500 }).mintOnce('slow', holderMint.mint, always);
    await holderMint.started;
    let waiterMints = 0;
    const waiter = store({ namespace, lockTtlMs: 500, redis: other }).mintOnce('slow', async () => ({ accessToken: `czs_dup_${++waiterMints}`, expiresAt: inFuture(900) }), always);
    // Three lock lifetimes: the lock only lives on because the holder renews it.
    await sleep(1500);
    assert.equal(waiterMints, 0, 'no second mint while the holder renews its lock');
    holderMint.resolve();
    const [a, b] = await Promise.all([holder, waiter]);
    assert.equal(a.accessToken, 'czs_slow_holder');
    assert.equal(b.accessToken, 'czs_slow_holder');
    assert.equal(waiterMints, 0);
  });

  it('waiters are woken by the holder\'s message when the token lands, not by polling', { timeout: 10_000 }, async () => {
    const namespace = ns();
    const holderMint = manualMint('czs_published');
    // Neither the safety poll (60 s) nor the lock's expiry (30 s) can wake the waiters in this test.
    const make = (r: Redis) => store({ namespace, redis: r, lockTtlMs: 30_000, safetyPollMs: 60_000 });
    const holder = make(redis).mintOnce('wake', holderMint.mint, always);
    await holderMint.started;
    const lockChecks = await commandCalls('pttl');
    const waiters = [make(other).mintOnce('wake', () => assert.fail('no mint'), always), make(redis).mintOnce('wake', () => assert.fail('no mint'), always)];
    // The acquire script asks the lock's PTTL only when it is held: both waiters found it held.
    while ((await commandCalls('pttl')) < lockChecks + 2) await sleep(5);
    const readsBefore = await commandCalls('hget');
    holderMint.resolve();
    const got = await Promise.all([holder, ...waiters]);
    assert.ok(got.every((t) => t.accessToken === 'czs_published'));
    // Redis counts the HGET inside the holder's write script too: 1 + one read per waiter.
    assert.equal((await commandCalls('hget')) - readsBefore, 3, 'one read per waiter, after the wake-up');
  });

  it('a holder whose mint fails lets go, and one waiter mints in its place', { timeout: 10_000 }, async () => {
    const namespace = ns();
    const holderMint = manualMint('never');
    const make = (r: Redis) => store({ namespace, redis: r, lockTtlMs: 30_000, safetyPollMs: 60_000 });
    const holder = make(redis).mintOnce('fails', holderMint.mint, always);
    await holderMint.started;
    let minted = 0;
    const retry = async () => ({ accessToken: `czs_retry_${++minted}`, expiresAt: inFuture(900) });
    const waiters = [make(other).mintOnce('fails', retry, always), make(redis).mintOnce('fails', retry, always)];
    await sleep(50);
    holderMint.reject(new Error('token endpoint down'));
    await assert.rejects(holder, /token endpoint down/);
    const got = await Promise.all(waiters);
    assert.equal(minted, 1, 'one waiter took the lock and minted; the other waited for it');
    assert.ok(got.every((t) => t.accessToken === 'czs_retry_1'));
  });

  it('a holder that died (its lock expires without a token) is replaced once the lock expires', { timeout: 10_000 }, async () => {
    const namespace = ns();
    // The session's keys, learnt from a token stored for it, which is then dropped.
    await store({ namespace }).mintOnce('orphan', async () => ({ accessToken: 'czs_first', expiresAt: inFuture(900) }), always);
    const tokenKey = (await redis.keys(`${namespace}:*:token`))[0] as string;
    await redis.del(tokenKey);
    // A holder that took the lock and then vanished: nobody renews it.
    await redis.set(tokenKey.replace(/:token$/, ':lock'), '1:vanished', 'PX', 300);
    let minted = 0;
    const got = await store({ namespace, safetyPollMs: 60_000 }).mintOnce('orphan', async () => ({ accessToken: `czs_after_${++minted}`, expiresAt: inFuture(900) }), always);
    assert.equal(minted, 1);
    assert.equal(got.accessToken, 'czs_after_1');
  });

  it('a Redis stall shorter than the give-up bound costs no duplicate mint', { timeout: 15_000 }, async () => {
    const namespace = ns();
    let minted = 0;
    let unshared = 0;
    const mint = async () => ({ accessToken: `czs_stall_${++minted}`, expiresAt: inFuture(900) });
    const pauser = new Redis(server.url);
    try {
      // Every command times out (100 ms) for 600 ms, and the first answers to arrive are stale.
      await pauser.call('CLIENT', 'PAUSE', '600', 'ALL');
      const make = (r: Redis) => store({ namespace, redis: r, commandTimeoutMs: 100, unshared: () => (unshared += 1) });
      const got = await Promise.all([make(redis).mintOnce('stall', mint, always), make(other).mintOnce('stall', mint, always), make(redis).mintOnce('stall', mint, always)]);
      assert.equal(minted, 1);
      assert.equal(unshared, 0);
      assert.ok(got.every((t) => t.accessToken === 'czs_stall_1'));
    } finally {
      pauser.disconnect();
    }
  });

  it('redis-error-reply-mints-at-once: Redis refusing a step (NOPERM) is an answer, so the miss mints at once, not after the give-up time', { timeout: 30_000 }, async () => {
    // The read (HGET) refused, and the acquire script refused inside (INCR): the two steps of a miss.
    for (const [denied, reported] of [['hget', 'read NOPERM'], ['incr', 'lock ERR']] as const) {
      const user = `csg-no-${denied}`;
      await redis.call('ACL', 'SETUSER', user, 'on', '>pw', '~*', '&*', '+@all', `-${denied}`);
      const refused = new Redis(server.url, { username: user, password: 'pw' });
      try {
        await new Promise((r) => refused.once('ready', r));
        let unshared = 0;
        let minted = 0;
        const errors: string[] = [];
        const started = Date.now();
        const got = await store({ namespace: ns(), redis: refused, giveUpAfterMs: 5000, errors, unshared: () => (unshared += 1) }).mintOnce(
          'refused',
          async () => ({ accessToken: `czs_refused_${++minted}`, expiresAt: inFuture(900) }),
          always,
        );
        const tookMs = Date.now() - started;
        assert.equal(got.accessToken, 'czs_refused_1');
        assert.ok(tookMs < 2000, `without ${denied}: minted after ${tookMs} ms (give-up time 5000 ms)`);
        assert.equal(unshared, 1, 'counted as unshared');
        assert.equal(errors[0], reported, 'the refusal is reported');
      } finally {
        refused.disconnect();
        await redis.call('ACL', 'DELUSER', user);
      }
    }
  });

  it('a transient refusal (READONLY: a replica while a failover runs) is retried, but only for the give-up time', { timeout: 30_000 }, async () => {
    const replica = await startRedis();
    const client = new Redis(replica.url);
    try {
      // A replica of a master that never answers: it serves reads and refuses every write.
      await client.call('REPLICAOF', '127.0.0.1', String(await freePort()));
      let unshared = 0;
      const errors: string[] = [];
      const started = Date.now();
      const got = await store({ namespace: ns(), redis: client, giveUpAfterMs: 800, errors, unshared: () => (unshared += 1) }).mintOnce(
        'readonly',
        async () => ({ accessToken: 'czs_readonly', expiresAt: inFuture(900) }),
        always,
      );
      const tookMs = Date.now() - started;
      assert.equal(got.accessToken, 'czs_readonly');
      assert.ok(tookMs >= 750, `retried until the give-up time, not given up at once (${tookMs} ms)`);
      assert.ok(tookMs < 10_000, `then given up: a READONLY loop is bounded (${tookMs} ms)`);
      assert.ok(errors.length > 1 && errors.every((e) => e === 'lock READONLY'), errors.join(', '));
      assert.equal(unshared, 1);
    } finally {
      client.disconnect();
      await replica.stop();
    }
  });

  /** `promise`, or a failure naming `what` once `ms` have passed. */
  async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} after ${ms} ms`)), ms)));
    try {
      return await Promise.race([promise, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A connection on which Redis applies every acquire but whose answer never comes back (a reset
   * or a stall after the script ran): the replica gives up on the lock step and mints without
   * knowing that the lock is its own. Neither a lock renewal nor the lock's expiry (30 s) nor the
   * safety poll (60 s) can end the other replica's wait within the test's bound.
   */
  async function acquireAnswerLost(namespace: string) {
    const lossy = new Redis(server.url);
    await new Promise((r) => lossy.once('ready', r));
    const make = (r: Redis, unshared?: () => void) =>
      store({ namespace, redis: r, lockTtlMs: 30_000, safetyPollMs: 60_000, commandTimeoutMs: 100, giveUpAfterMs: 500, ...(unshared ? { unshared } : {}) });
    const unsure = make(lossy);
    const scripted = lossy as unknown as { csgAcquire: (...args: unknown[]) => Promise<unknown> };
    const acquire = scripted.csgAcquire.bind(lossy);
    scripted.csgAcquire = (...args) => {
      acquire(...args).catch(() => undefined);
      return new Promise(() => undefined);
    };
    return { lossy, unsure, make };
  }

  it('redis-acquire-answer-lost: a lock taken whose answer was lost gets the token written under it, so a waiter takes that token', { timeout: 30_000 }, async () => {
    const namespace = ns();
    const { lossy, unsure, make } = await acquireAnswerLost(namespace);
    try {
      const holderMint = manualMint('czs_unsure_holder');
      let unshared = 0;
      const holder = unsure.mintOnce('lost', holderMint.mint, always);
      await holderMint.started;
      assert.equal((await redis.keys(`${namespace}:*:lock`)).length, 1, 'the lock was taken all the same');
      const lockChecks = await commandCalls('pttl');
      let waiterMints = 0;
      const waiter = make(other, () => (unshared += 1)).mintOnce('lost', async () => ({ accessToken: `czs_dup_${++waiterMints}`, expiresAt: inFuture(900) }), always);
      while ((await commandCalls('pttl')) < lockChecks + 1) await sleep(5);
      holderMint.resolve();
      const [a, b] = await within(5000, Promise.all([holder, waiter]), 'the waiter is still held by a lock nobody renews');
      assert.equal(a.accessToken, 'czs_unsure_holder');
      assert.equal(b.accessToken, 'czs_unsure_holder', 'the waiter took the token written under the lock');
      assert.equal(waiterMints, 0);
      assert.equal(unshared, 0);
      assert.deepEqual(await redis.keys(`${namespace}:*:lock`), [], 'the write let go of the lock');
    } finally {
      lossy.disconnect();
    }
  });

  it('redis-acquire-answer-lost: when that mint fails, the lock is let go and a waiter mints in its place', { timeout: 30_000 }, async () => {
    const namespace = ns();
    const { lossy, unsure, make } = await acquireAnswerLost(namespace);
    try {
      const holderMint = manualMint('never');
      const holder = unsure.mintOnce('lost-failed', holderMint.mint, always);
      await holderMint.started;
      const lockChecks = await commandCalls('pttl');
      let waiterMints = 0;
      const waiter = make(other).mintOnce('lost-failed', async () => ({ accessToken: `czs_waiter_${++waiterMints}`, expiresAt: inFuture(900) }), always);
      while ((await commandCalls('pttl')) < lockChecks + 1) await sleep(5);
      holderMint.reject(new Error('token endpoint down'));
      await assert.rejects(holder, /token endpoint down/);
      const got = await within(5000, waiter, 'the waiter is still held by a lock nobody renews');
      assert.equal(got.accessToken, 'czs_waiter_1');
      assert.equal(waiterMints, 1);
    } finally {
      lossy.disconnect();
    }
  });

  it('Redis down: the caller mints alone at once, counted as unshared', async () => {
    const down = new Redis({ port: 1, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
    down.on('error', () => undefined);
    let unshared = 0;
    let minted = 0;
    try {
      const got = await store({ namespace: ns(), redis: down, unshared: () => (unshared += 1) }).mintOnce('alone', async () => ({ accessToken: `czs_alone_${++minted}`, expiresAt: inFuture(900) }), always);
      assert.equal(got.accessToken, 'czs_alone_1');
      assert.equal(unshared, 1);
    } finally {
      down.disconnect();
    }
  });
});
