import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { createRedisTokenStore } from '../../src/cache/redis-token-store.js';
import type { RedisClient } from '../../src/cache/redis-topology.js';
import { createTokenSealer } from '../../src/cache/token-crypto.js';
import { createTokenCache as createMemoryTokenCache, type CacheResult, type TokenCacheOptions } from '../../src/coze/token-cache.js';
import { TokenMintError, type CozeToken } from '../../src/coze/token-client.js';
import { createFakeClock } from './clock.js';

/** A mint the test resolves by hand, counting calls per session. */
function createManualMint(clock: { now: () => number }, ttlSeconds = 900) {
  const calls: string[] = [];
  const pending: Array<{ session: string; resolve: (t: CozeToken) => void; reject: (e: unknown) => void }> = [];
  let serial = 0;
  return {
    calls,
    pending,
    mint(session: string): Promise<CozeToken> {
      calls.push(session);
      return new Promise((resolve, reject) => pending.push({ session, resolve, reject }));
    },
    /** The oldest pending mint, once there is one: with a shared level, Redis round trips come first. */
    async next(): Promise<{ session: string; resolve: (t: CozeToken) => void; reject: (e: unknown) => void }> {
      for (let i = 0; i < 500 && pending.length === 0; i++) await new Promise((r) => setTimeout(r, 2));
      const next = pending.shift();
      assert.ok(next, 'a mint is pending');
      return next;
    },
    async resolveNext(): Promise<CozeToken> {
      const next = await this.next();
      const token = { accessToken: `czs_${next.session}_${++serial}`, expiresAt: Math.floor(clock.now() / 1000) + ttlSeconds };
      next.resolve(token);
      return token;
    },
    /** Waits until `n` mints were asked for, then checks that no more were. */
    async called(n: number): Promise<void> {
      for (let i = 0; i < 500 && calls.length < n; i++) await new Promise((r) => setTimeout(r, 2));
      await new Promise((r) => setTimeout(r, 10));
      assert.equal(calls.length, n, `${n} mint(s)`);
    },
  };
}

/**
 * Waits until no mint is in flight, its result stored (with Redis, after a round trip), or
 * until the manual mint has been asked for a token the test has yet to give.
 */
async function idle(cache: { readonly inflight: number }, mint: { readonly pending: readonly unknown[] }): Promise<void> {
  for (let i = 0; i < 500 && cache.inflight > 0 && mint.pending.length === 0; i++) await new Promise((r) => setTimeout(r, 2));
  await new Promise((r) => setImmediate(r));
}

export type CacheFactory = (options: TokenCacheOptions) => ReturnType<typeof createMemoryTokenCache>;

/** Memory in front of the shared Redis level, in a namespace of its own under `prefix` per cache. */
export function inFrontOfRedis(redis: RedisClient, subscriber: RedisClient, prefix: string): CacheFactory {
  return (options) =>
    createMemoryTokenCache({
      ...options,
      shared: createRedisTokenStore({
        redis,
        subscriber,
        sealer: createTokenSealer(randomBytes(32)),
        namespace: `${prefix}:${randomBytes(6).toString('hex')}`,
        lockTtlMs: 5000,
        commandTimeoutMs: 1000,
        giveUpAfterMs: 4000,
      }),
    });
}

/**
 * The token cache's contract (STYLE.md: one suite for every store): memory alone, and memory in
 * front of the shared Redis level on each Redis topology (issue 19). Call it inside a describe.
 */
export function runTokenCacheContract(createTokenCache: CacheFactory): void {
  it('1,000 concurrent lookups for one new session cause exactly 1 mint', async () => {
    const clock = createFakeClock(Date.now());
    const mint = createManualMint(clock);
    const results: CacheResult[] = [];
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now, onLookup: (r) => results.push(r) });

    const lookups = Array.from({ length: 1000 }, () => cache.lookup('alice'));
    await idle(cache, mint);
    await mint.called(1);
    const token = await mint.resolveNext();
    const got = await Promise.all(lookups);
    assert.ok(got.every((g) => g.token.accessToken === token.accessToken));
    assert.equal(results.filter((r) => r === 'miss').length, 1);
    assert.equal(results.filter((r) => r === 'coalesced').length, 999);

    const again = await cache.lookup('alice');
    assert.equal(again.result, 'hit');
    await mint.called(1);
  });

  it('serves a stale token while exactly one background refresh runs', async () => {
    const clock = createFakeClock(Date.now());
    const mint = createManualMint(clock, 900);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now, random: () => 0 });
    const first = cache.lookup('bob');
    await idle(cache, mint);
    const t1 = await mint.resolveNext();
    await first;

    clock.advance((900 - 60) * 1000); // exactly at refresh-at: stale
    const lookups = await Promise.all(Array.from({ length: 50 }, () => cache.lookup('bob')));
    assert.ok(lookups.every((l) => l.result === 'stale' && l.token.accessToken === t1.accessToken));
    await mint.called(2);

    const t2 = await mint.resolveNext();
    await idle(cache, mint);
    const after = await cache.lookup('bob');
    assert.equal(after.result, 'hit');
    assert.equal(after.token.accessToken, t2.accessToken);
  });

  it('is fresh until expires_in minus refreshBefore, with jitter only making it earlier', async () => {
    const clock = createFakeClock(Date.now());
    const mint = createManualMint(clock, 900);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now, random: () => 0.999 });
    const p = cache.lookup('j');
    await idle(cache, mint);
    await mint.resolveNext();
    await p;
    clock.advance((900 - 67) * 1000); // jitter adds up to 10% of 60 s: refresh-at is at 834.006 s
    assert.equal((await cache.lookup('j')).result, 'hit');
    clock.advance(2000);
    assert.equal((await cache.lookup('j')).result, 'stale');
  });

  it('makes callers wait for the mint once the token is expired', async () => {
    const clock = createFakeClock(Date.now());
    const mint = createManualMint(clock, 900);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now });
    const p = cache.lookup('carol');
    await idle(cache, mint);
    const t1 = await mint.resolveNext();
    await p;
    clock.advance(900 * 1000);
    const lookups = [cache.lookup('carol'), cache.lookup('carol')];
    await idle(cache, mint);
    await mint.called(2);
    const t2 = await mint.resolveNext();
    const got = await Promise.all(lookups);
    assert.deepEqual(got.map((g) => g.result), ['miss', 'coalesced']);
    assert.ok(got.every((g) => g.token.accessToken === t2.accessToken && g.token.accessToken !== t1.accessToken));
  });

  it('invalidateIfSame drops the entry only while it still holds that token', async () => {
    const clock = createFakeClock(Date.now());
    const mint = createManualMint(clock);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now });
    const p = cache.lookup('dave');
    await idle(cache, mint);
    const t1 = await mint.resolveNext();
    await p;

    assert.equal(await cache.invalidateIfSame('dave', t1.accessToken), true);
    const p2 = cache.lookup('dave');
    await idle(cache, mint);
    const t2 = await mint.resolveNext();
    await p2;

    // A late racer still holding t1 must not drop the newer t2.
    assert.equal(await cache.invalidateIfSame('dave', t1.accessToken), false);
    assert.equal((await cache.lookup('dave')).token.accessToken, t2.accessToken);
    await mint.called(2);
  });

  it('never holds more entries than its bound', async () => {
    const clock = createFakeClock(Date.now());
    let n = 0;
    const cache = createTokenCache({
      mint: async () => ({ accessToken: `t${++n}`, expiresAt: Math.floor(clock.now() / 1000) + 900 }),
      maxEntries: 100,
      refreshBeforeSeconds: 60,
      waitTimeoutMs: 1000,
      now: clock.now,
    });
    for (let i = 0; i < 1000; i++) {
      await cache.lookup(`s${i}`);
      assert.ok(cache.size <= 100);
    }
    assert.equal(cache.size, 100);
    assert.equal((await cache.lookup('s999')).result, 'hit', 'the most recent survive');
    assert.equal((await cache.lookup('s0')).result, 'miss', 'the oldest were evicted');
  });

  it('shares one failure with every waiter and mints again on the next lookup', async () => {
    const clock = createFakeClock(Date.now());
    const mint = createManualMint(clock);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now });
    const lookups = [cache.lookup('erin'), cache.lookup('erin')];
    await idle(cache, mint);
    (await mint.next()).reject(new TokenMintError({ outcome: 'invalid_client', attempts: 1, message: 'nope' }));
    const settled = await Promise.allSettled(lookups);
    assert.ok(settled.every((s) => s.status === 'rejected' && (s.reason as TokenMintError).outcome === 'invalid_client'));
    const retry = cache.lookup('erin');
    await idle(cache, mint);
    await mint.called(2);
    await mint.resolveNext();
    assert.equal((await retry).result, 'miss');
  });

  it('times out a waiter while the mint runs on and lands in the cache', async () => {
    const clock = createFakeClock(Date.now());
    const mint = createManualMint(clock);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 20, now: clock.now });
    await assert.rejects(async () => cache.lookup('frank'), (err: unknown) => err instanceof TokenMintError && err.outcome === 'timeout');
    const token = await mint.resolveNext();
    await idle(cache, mint);
    const later = await cache.lookup('frank');
    assert.deepEqual(later, { token, result: 'hit' });
    await mint.called(1);
  });

  it('keeps serving the stale token when the background refresh fails, and reports the failure', async () => {
    const clock = createFakeClock(Date.now());
    const mint = createManualMint(clock, 900);
    const failures: string[] = [];
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now, random: () => 0, onBackgroundRefreshError: (s) => failures.push(s) });
    const p = cache.lookup('gina');
    await idle(cache, mint);
    const t1 = await mint.resolveNext();
    await p;
    clock.advance(850 * 1000);
    assert.equal((await cache.lookup('gina')).token.accessToken, t1.accessToken);
    (await mint.next()).reject(new TokenMintError({ outcome: 'server_error', attempts: 3, message: 'down' }));
    await idle(cache, mint);
    assert.deepEqual(failures, ['gina']);
    const again = await cache.lookup('gina');
    assert.equal(again.result, 'stale');
    assert.equal(again.token.accessToken, t1.accessToken);
    // A failing refresh is not retried by every request (a Redis lock cycle and a warning each).
    for (let i = 0; i < 20; i++) await cache.lookup('gina');
    await idle(cache, mint);
    await mint.called(2);

    clock.advance(2000);
    assert.equal((await cache.lookup('gina')).result, 'stale');
    await idle(cache, mint);
    await mint.called(3);
    (await mint.next()).reject(new TokenMintError({ outcome: 'server_error', attempts: 3, message: 'down' }));
    await idle(cache, mint);
    clock.advance(2000);
    await cache.lookup('gina');
    await idle(cache, mint);
    await mint.called(3);
    clock.advance(2000); // the pause doubled to 4 s
    await cache.lookup('gina');
    await idle(cache, mint);
    await mint.called(4);
    const t2 = await mint.resolveNext();
    await idle(cache, mint);
    assert.deepEqual(await cache.lookup('gina'), { token: t2, result: 'hit' });
    assert.deepEqual(failures, ['gina', 'gina']);
  });

  it('mints nothing, and takes no lock, while the mint is refused', async () => {
    const clock = createFakeClock(Date.now());
    const mint = createManualMint(clock);
    let refusing = true;
    const held = new TokenMintError({ outcome: 'server_error', attempts: 0, message: 'held' });
    const cache = createTokenCache({ mint: mint.mint, refuse: () => (refusing ? held : undefined), maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now });
    await assert.rejects(async () => cache.lookup('hank'), (err: unknown) => err === held);
    await mint.called(0);
    refusing = false;
    const p = cache.lookup('hank');
    await idle(cache, mint);
    const token = await mint.resolveNext();
    assert.deepEqual(await p, { token, result: 'miss' });
  });
}
