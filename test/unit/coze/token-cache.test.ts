import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTokenCache, type SharedTokenStore } from '../../../src/coze/token-cache.js';
import type { CozeToken } from '../../../src/coze/token-client.js';

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
