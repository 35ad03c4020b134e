import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTokenCache, type CacheResult } from '../../../src/coze/token-cache.js';
import { TokenMintError, type CozeToken } from '../../../src/coze/token-client.js';
import { createFakeClock } from '../../helpers/clock.js';

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
    resolveNext(): CozeToken {
      const next = pending.shift();
      assert.ok(next, 'a mint is pending');
      const token = { accessToken: `czs_${next.session}_${++serial}`, expiresAt: Math.floor(clock.now() / 1000) + ttlSeconds };
      next.resolve(token);
      return token;
    },
  };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('token-cache', () => {
  it('1,000 concurrent lookups for one new session cause exactly 1 mint', async () => {
    const clock = createFakeClock();
    const mint = createManualMint(clock);
    const results: CacheResult[] = [];
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now, onLookup: (r) => results.push(r) });

    const lookups = Array.from({ length: 1000 }, () => cache.get('alice'));
    await flush();
    assert.equal(mint.calls.length, 1);
    const token = mint.resolveNext();
    const got = await Promise.all(lookups);
    assert.ok(got.every((g) => g.token.accessToken === token.accessToken));
    assert.equal(results.filter((r) => r === 'miss').length, 1);
    assert.equal(results.filter((r) => r === 'coalesced').length, 999);

    const again = await cache.get('alice');
    assert.equal(again.result, 'hit');
    assert.equal(mint.calls.length, 1);
  });

  it('serves a stale token while exactly one background refresh runs', async () => {
    const clock = createFakeClock();
    const mint = createManualMint(clock, 900);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now, random: () => 0 });
    const first = cache.get('bob');
    await flush();
    const t1 = mint.resolveNext();
    await first;

    clock.advance((900 - 60) * 1000); // exactly at refresh-at: stale
    const lookups = await Promise.all(Array.from({ length: 50 }, () => cache.get('bob')));
    assert.ok(lookups.every((l) => l.result === 'stale' && l.token.accessToken === t1.accessToken));
    assert.equal(mint.calls.length, 2, 'one background refresh, not fifty');

    const t2 = mint.resolveNext();
    await flush();
    const after = await cache.get('bob');
    assert.equal(after.result, 'hit');
    assert.equal(after.token.accessToken, t2.accessToken);
  });

  it('is fresh until expires_in minus refreshBefore, with jitter only making it earlier', async () => {
    const clock = createFakeClock();
    const mint = createManualMint(clock, 900);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now, random: () => 0.999 });
    const p = cache.get('j');
    await flush();
    mint.resolveNext();
    await p;
    clock.advance((900 - 67) * 1000); // jitter adds up to 10% of 60 s: refresh-at is at 834.006 s
    assert.equal((await cache.get('j')).result, 'hit');
    clock.advance(2000);
    assert.equal((await cache.get('j')).result, 'stale');
  });

  it('makes callers wait for the mint once the token is expired', async () => {
    const clock = createFakeClock();
    const mint = createManualMint(clock, 900);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now });
    const p = cache.get('carol');
    await flush();
    const t1 = mint.resolveNext();
    await p;
    clock.advance(900 * 1000);
    const lookups = [cache.get('carol'), cache.get('carol')];
    await flush();
    assert.equal(mint.calls.length, 2);
    const t2 = mint.resolveNext();
    const got = await Promise.all(lookups);
    assert.deepEqual(got.map((g) => g.result), ['miss', 'coalesced']);
    assert.ok(got.every((g) => g.token.accessToken === t2.accessToken && g.token.accessToken !== t1.accessToken));
  });

  it('invalidateIfSame drops the entry only while it still holds that token', async () => {
    const clock = createFakeClock();
    const mint = createManualMint(clock);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now });
    const p = cache.get('dave');
    await flush();
    const t1 = mint.resolveNext();
    await p;

    assert.equal(cache.invalidateIfSame('dave', t1.accessToken), true);
    const p2 = cache.get('dave');
    await flush();
    const t2 = mint.resolveNext();
    await p2;

    // A late racer still holding t1 must not drop the newer t2.
    assert.equal(cache.invalidateIfSame('dave', t1.accessToken), false);
    assert.equal((await cache.get('dave')).token.accessToken, t2.accessToken);
    assert.equal(mint.calls.length, 2);
  });

  it('never holds more entries than its bound', async () => {
    const clock = createFakeClock();
    let n = 0;
    const cache = createTokenCache({
      mint: async () => ({ accessToken: `t${++n}`, expiresAt: Math.floor(clock.now() / 1000) + 900 }),
      maxEntries: 100,
      refreshBeforeSeconds: 60,
      waitTimeoutMs: 1000,
      now: clock.now,
    });
    for (let i = 0; i < 1000; i++) {
      await cache.get(`s${i}`);
      assert.ok(cache.size <= 100);
    }
    assert.equal(cache.size, 100);
    assert.equal((await cache.get('s999')).result, 'hit', 'the most recent survive');
    assert.equal((await cache.get('s0')).result, 'miss', 'the oldest were evicted');
  });

  it('shares one failure with every waiter and mints again on the next lookup', async () => {
    const clock = createFakeClock();
    const mint = createManualMint(clock);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now });
    const lookups = [cache.get('erin'), cache.get('erin')];
    await flush();
    mint.pending.shift()?.reject(new TokenMintError({ outcome: 'invalid_client', attempts: 1, message: 'nope' }));
    const settled = await Promise.allSettled(lookups);
    assert.ok(settled.every((s) => s.status === 'rejected' && (s.reason as TokenMintError).outcome === 'invalid_client'));
    const retry = cache.get('erin');
    await flush();
    assert.equal(mint.calls.length, 2);
    mint.resolveNext();
    assert.equal((await retry).result, 'miss');
  });

  it('times out a waiter while the mint runs on and lands in the cache', async () => {
    const clock = createFakeClock();
    const mint = createManualMint(clock);
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 20, now: clock.now });
    await assert.rejects(cache.get('frank'), (err: unknown) => err instanceof TokenMintError && err.outcome === 'timeout');
    const token = mint.resolveNext();
    await flush();
    const later = await cache.get('frank');
    assert.deepEqual(later, { token, result: 'hit' });
    assert.equal(mint.calls.length, 1);
  });

  it('keeps serving the stale token when the background refresh fails, and reports the failure', async () => {
    const clock = createFakeClock();
    const mint = createManualMint(clock, 900);
    const failures: string[] = [];
    const cache = createTokenCache({ mint: mint.mint, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000, now: clock.now, random: () => 0, onBackgroundRefreshError: (s) => failures.push(s) });
    const p = cache.get('gina');
    await flush();
    const t1 = mint.resolveNext();
    await p;
    clock.advance(850 * 1000);
    assert.equal((await cache.get('gina')).token.accessToken, t1.accessToken);
    mint.pending.shift()?.reject(new TokenMintError({ outcome: 'server_error', attempts: 3, message: 'down' }));
    await flush();
    assert.deepEqual(failures, ['gina']);
    const again = await cache.get('gina');
    assert.equal(again.result, 'stale');
    assert.equal(again.token.accessToken, t1.accessToken);
  });
});
