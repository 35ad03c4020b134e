import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lookupToken } from '../../../src/coze/coze-errors.js';
import { createMintBreaker } from '../../../src/coze/mint-breaker.js';
import { createTokenCache, type SharedTokenStore } from '../../../src/coze/token-cache.js';
import { TokenMintError, type CozeToken } from '../../../src/coze/token-client.js';
import { GatewayError } from '../../../src/errors.js';
import { createFakeClock } from '../../helpers/clock.js';

/** A shared level whose compare-and-delete fails, as Redis does when READONLY or timing out. */
function sharedThatCannotDelete(): SharedTokenStore & { stored: Map<string, CozeToken> } {
  const stored = new Map<string, CozeToken>();
  return {
    stored,
    async mintOnce(sessionName, mint, usable) {
      const found = stored.get(sessionName);
      if (found && usable(found)) return found;
      const token = await mint();
      stored.set(sessionName, token);
      return token;
    },
    async invalidateIfSame() {
      return false;
    },
  };
}

describe('token cache in front of a shared level', () => {
  it('never takes back from the shared level a token it saw revoked', async () => {
    const shared = sharedThatCannotDelete();
    let n = 0;
    const mint = async (): Promise<CozeToken> => ({ accessToken: `czs_${++n}`, expiresAt: Math.floor(Date.now() / 1000) + 900 });
    const cache = createTokenCache({ mint, shared, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 1000 });

    const first = await cache.lookup('ivy');
    assert.equal(first.token.accessToken, 'czs_1');
    assert.equal(await cache.invalidateIfSame('ivy', 'czs_1'), true);
    assert.equal(shared.stored.get('ivy')?.accessToken, 'czs_1', 'the shared level still holds it');

    const again = await cache.lookup('ivy');
    assert.equal(again.result, 'miss');
    assert.equal(again.token.accessToken, 'czs_2');
  });

  it('remembers only tokens it held: naming another token revokes nothing', async () => {
    const shared = sharedThatCannotDelete();
    const token = { accessToken: 'czs_other', expiresAt: Math.floor(Date.now() / 1000) + 900 };
    shared.stored.set('jo', token);
    const cache = createTokenCache({ mint: async () => assert.fail('no mint'), shared, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 1000 });
    assert.equal(await cache.invalidateIfSame('jo', 'czs_other'), false);
    assert.equal((await cache.lookup('jo')).token.accessToken, 'czs_other');
  });
});

describe('token cache with the mint breaker and a shared level', () => {
  it('probe-race-one-probe: two sessions past the pre-check once a hold has passed send one probe to Coze; the other gets the held 502 at once, as at the pre-check', async () => {
    const clock = createFakeClock(Date.UTC(2026, 0, 1));
    const reached: string[] = [];
    const answers: Array<(fail: boolean) => void> = [];
    const breaker = createMintBreaker(
      (key) => {
        reached.push(key);
        return new Promise<CozeToken>((resolve, reject) =>
          answers.push((fail) => (fail ? reject(new TokenMintError({ outcome: 'server_error', attempts: 1, message: 'Coze answered 500' })) : resolve({ accessToken: `czs_${key}`, expiresAt: Math.floor(clock.now() / 1000) + 900 }))),
        );
      },
      { baseHoldMs: 1000, maxHoldMs: 30_000, now: clock.now },
    );
    // As Redis does: a read, the breaker's pre-check, a lock, then the mint; each round trip yields.
    const shared: SharedTokenStore = {
      async mintOnce(_sessionName, mint, _usable, refuse) {
        await Promise.resolve();
        const refused = refuse?.();
        if (refused) throw refused;
        await Promise.resolve();
        return mint();
      },
      invalidateIfSame: async () => false,
    };
    const cache = createTokenCache({ mint: breaker.mint, refuse: breaker.refusal, shared, maxEntries: 10, refreshBeforeSeconds: 60, waitTimeoutMs: 60_000, now: clock.now });
    const settle = (lookup: ReturnType<typeof lookupToken>) => Promise.resolve(lookup).catch((err: unknown) => err);
    const untilMinting = async (n: number) => {
      while (answers.length < n) await new Promise((r) => setImmediate(r));
    };

    const failed = settle(lookupToken(cache, 'first'));
    await untilMinting(1);
    answers.shift()?.(true);
    assert.ok((await failed) instanceof GatewayError);

    clock.advance(1000);
    const a = settle(lookupToken(cache, 'a'));
    let refused: unknown;
    void settle(lookupToken(cache, 'b')).then((err) => (refused = err));
    // Until b is answered, or a second probe reaches Coze.
    while (refused === undefined && answers.length < 2) await new Promise((r) => setImmediate(r));
    assert.deepEqual(reached, ['first', 'a'], 'one probe reached Coze');
    assert.ok(refused instanceof GatewayError);
    assert.equal(refused.status, 502);
    assert.equal(refused.reason, 'token-mint-failed');
    assert.match(refused.message, /held: the token endpoint failed moments ago/);
    answers.shift()?.(false);
    assert.deepEqual(await a, { accessToken: 'czs_a', expiresAt: Math.floor(clock.now() / 1000) + 900 });
  });
});
