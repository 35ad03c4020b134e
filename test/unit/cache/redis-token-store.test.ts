import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createRedisTokenStore, redisNamespace } from '../../../src/cache/redis-token-store.js';
import { createTokenSealer } from '../../../src/cache/token-crypto.js';
import type { CozeToken } from '../../../src/coze/token-client.js';
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
  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    other = new Redis(server.url);
  });
  after(async () => {
    redis?.disconnect();
    other?.disconnect();
    await server?.stop();
  });

  const ns = () => `t:${randomBytes(6).toString('hex')}`;
  const store = (options: { redis?: Redis; key?: Buffer; previous?: Buffer[]; namespace: string; lockTtlMs?: number; waitMs?: number; unshared?: () => void }) =>
    createRedisTokenStore({
      redis: options.redis ?? redis,
      sealer: createTokenSealer(options.key ?? KEY, options.previous ?? []),
      namespace: options.namespace,
      lockTtlMs: options.lockTtlMs ?? 5000,
      waitMs: options.waitMs ?? 5000,
      ...(options.unshared ? { onUnsharedMint: options.unshared } : {}),
    });
  const KEY = randomBytes(32);

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

  it('a waiter mints for itself once its bounded wait runs out', async () => {
    const namespace = ns();
    const hung = store({ namespace }).mintOnce('stuck', () => new Promise<CozeToken>(() => undefined), always);
    void hung;
    await sleep(30);
    let unshared = 0;
    const started = Date.now();
    const got = await store({ namespace, redis: other, waitMs: 200, unshared: () => (unshared += 1) }).mintOnce('stuck', async () => ({ accessToken: 'czs_self', expiresAt: inFuture(900) }), always);
    assert.equal(got.accessToken, 'czs_self');
    assert.ok(Date.now() - started < 1000);
    assert.equal(unshared, 1);
  });
});
