import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { missingCredentialDetail } from '../../src/auth/identity.js';
import { assertEnvelope, request } from '../helpers/http.js';
import { startStack } from '../helpers/stack.js';

/**
 * Issue 16 item 11: the 401 a caller without a credential gets names what this gateway
 * accepts. A trusted-header-only sidecar must not tell its app to send a Bearer token or an
 * X-Api-Key it would never look at, nor name the trusted header to whoever asks (a hint which
 * header to forge should allowFrom be too wide).
 */
describe('credential-missing names the configured sources', () => {
  it('trusted-header-only-401-does-not-name-the-header: no Bearer, no X-Api-Key, and not the header to forge', async () => {
    // IDENTITY_JWT_PUBLIC_KEY='' turns off the caller key the test stack sets by default.
    const stack = await startStack({ env: { IDENTITY_JWT_PUBLIC_KEY: '', IDENTITY_TRUSTED_HEADER: 'x-forwarded-user' } });
    try {
      const res = await request(stack.url, { path: '/v1/bots/b' });
      assertEnvelope(res, 401, 'credential-missing');
      assert.equal(res.json().msg, 'No credential was sent. Send the request through the trusted proxy (or app) that authenticates its caller.');
      assert.doesNotMatch(res.json().msg, /Bearer|X-Api-Key/i);
      // The header a caller would have to forge is named to nobody: not in the body, not in a header.
      assert.doesNotMatch(res.body, /x-forwarded-user/i);
      assert.doesNotMatch(JSON.stringify(res.headers), /x-forwarded-user/i);
    } finally {
      await stack.close();
    }
  });

  it('a JWT-only gateway asks for a Bearer JWT and says nothing of API keys', async () => {
    const stack = await startStack();
    try {
      const res = await request(stack.url, { path: '/v1/bots/b' });
      assertEnvelope(res, 401, 'credential-missing');
      assert.equal(res.json().msg, 'No credential was sent. Send "Authorization: Bearer <JWT>".');
    } finally {
      await stack.close();
    }
  });

  it('several sources are named in the order the chain asks them', () => {
    assert.equal(
      missingCredentialDetail([{ name: 'jwt' }, { name: 'api_key' }]),
      'Send "Authorization: Bearer <JWT>" or "X-Api-Key: <API key>" (or "Authorization: Bearer <API key>").',
    );
  });
});
