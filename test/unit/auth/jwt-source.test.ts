import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { AuthError } from '../../../src/auth/identity.js';
import { createJwtSource } from '../../../src/auth/jwt-source.js';

/** Counts the WebCrypto signature checks jose makes: the expensive step the cache and the single flight save. */
function countVerifications(): { readonly count: number; restore(): void } {
  const subtle = globalThis.crypto.subtle;
  const original = subtle.verify.bind(subtle);
  let count = 0;
  type Verify = typeof subtle.verify;
  subtle.verify = ((...args: Parameters<Verify>) => {
    count += 1;
    return original(...args);
  }) as Verify;
  return {
    get count() {
      return count;
    },
    restore: () => void (subtle.verify = original),
  };
}

describe('jwt source: one verification per token', () => {
  let privateKey: CryptoKey;
  let publicKey: string;
  let counter: ReturnType<typeof countVerifications>;
  const sign = (subject: string, issuer = 'https://idp') => new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject(subject).setIssuer(issuer).setAudience('gateway').setExpirationTime('1h').sign(privateKey);
  const settings = () => ({ publicKey, subjectClaim: 'sub', clockToleranceSeconds: 30, jwksCooldownSeconds: 30, jwksCacheMaxAgeSeconds: 600 });
  const source = () => createJwtSource({ ...settings(), issuer: ['https://idp'], audience: ['gateway'] });
  const request = (jwt: string) => ({ headers: { authorization: `Bearer ${jwt}` }, remoteAddress: '127.0.0.1' });

  before(async () => {
    const pair = await generateKeyPair('RS256');
    privateKey = pair.privateKey;
    publicKey = await exportSPKI(pair.publicKey);
    counter = countVerifications();
  });
  after(() => counter.restore());

  it('jwt-access-token-types: the typ values of an access token are configurable, for a provider with a type of its own', async () => {
    const typed = (typ: string) => new SignJWT({}).setProtectedHeader({ alg: 'RS256', typ }).setSubject('alice').setIssuer('https://idp').setAudience('gateway').setExpirationTime('1h').sign(privateKey);
    const vendorType = 'application/okta-internal-at+jwt';
    await assert.rejects(async () => (await source()).authenticate(request(await typed(vendorType))), (err: unknown) => err instanceof AuthError && /expected JWT or at\+jwt/.test(err.message));
    const custom = await createJwtSource({ ...settings(), issuer: ['https://idp'], audience: ['gateway'], accessTokenTypes: ['JWT', 'at+jwt', 'okta-internal-at+jwt'] });
    assert.equal((await custom.authenticate(request(await typed(vendorType))))?.subject, 'alice');
    await assert.rejects(async () => custom.authenticate(request(await typed('logout+jwt'))), AuthError);
  });

  it('a burst of requests carrying one new token verifies it once (stampede regression)', async () => {
    const jwt = await source();
    const token = await sign('alice');
    const before = counter.count;
    const identities = await Promise.all(Array.from({ length: 100 }, () => jwt.authenticate(request(token))));
    assert.equal(counter.count - before, 1, 'one signature check for 100 concurrent requests');
    for (const identity of identities) assert.equal(identity?.subject, 'alice');
    await jwt.authenticate(request(token));
    assert.equal(counter.count - before, 1, 'and none once verified');
  });

  it('a burst with one bad token fails every request alike, and the failure is not remembered', async () => {
    const jwt = await source();
    const token = await sign('mallory', 'https://elsewhere');
    const before = counter.count;
    const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => jwt.authenticate(request(token))));
    for (const outcome of outcomes) {
      assert.equal(outcome.status, 'rejected');
      assert.ok(outcome.reason instanceof AuthError, String(outcome.reason));
      assert.match(outcome.reason.message, /iss/);
    }
    assert.ok(counter.count - before <= 1, `${counter.count - before} signature checks for 20 concurrent requests`);
    await assert.rejects(async () => jwt.authenticate(request(token)), AuthError);
  });

  it('jwt-source-needs-iss-and-aud: a source without an issuer, or without an audience and its explicit opt-out, is a programmer error', async () => {
    await assert.rejects(createJwtSource({ ...settings(), audience: ['gateway'] }), { name: 'TypeError', message: 'a JWT source needs an issuer (SPEC section 3.1)' });
    for (const audience of [undefined, []]) {
      await assert.rejects(createJwtSource({ ...settings(), issuer: ['https://idp'], ...(audience ? { audience } : {}) }), {
        name: 'TypeError',
        message: 'a JWT source needs an audience, or allowMissingAudience (SPEC section 3.1)',
      });
    }
    await assert.rejects(createJwtSource({ ...settings(), issuer: ['https://idp'], audience: ['gateway'], allowMissingAudience: true }), TypeError);
    const optedOut = await createJwtSource({ ...settings(), issuer: ['https://idp'], allowMissingAudience: true });
    const noAud = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject('alice').setIssuer('https://idp').setExpirationTime('1h').sign(privateKey);
    assert.equal((await optedOut.authenticate(request(noAud)))?.subject, 'alice');
    await assert.rejects(async () => optedOut.authenticate(request(await sign('alice'))), (err: unknown) => err instanceof AuthError && err.failure === 'bad_claims' && /aud/.test(err.message));
  });

  it('jwks-fetch-failure-is-unavailable: a key set fetch that throws (a TypeError from fetch) or answers no JSON is 503 identity-provider-unavailable, not 401 malformed', async () => {
    const html = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>'));
    await new Promise<void>((resolve) => html.listen(0, '127.0.0.1', resolve));
    try {
      const urls = {
        'a URL with credentials, which fetch refuses with a TypeError': 'http://user:pw@127.0.0.1:1/jwks',
        'a refused connection': 'http://127.0.0.1:1/jwks',
        'an HTML page': `http://127.0.0.1:${(html.address() as AddressInfo).port}/jwks`,
      };
      const token = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('alice').setIssuer('https://idp').setAudience('gateway').setExpirationTime('1h').sign(privateKey);
      for (const [what, jwksUrl] of Object.entries(urls)) {
        const { publicKey: _key, ...rest } = settings();
        const jwt = await createJwtSource({ ...rest, jwksUrl, issuer: ['https://idp'], audience: ['gateway'] });
        await assert.rejects(
          async () => jwt.authenticate(request(token)),
          (err: unknown) => err instanceof AuthError && err.failure === 'jwks_unavailable' && err.reason === 'identity-provider-unavailable' && err.status === 503,
          what,
        );
        assert.equal(await jwt.ready?.(), false, `${what}: not ready`);
      }
    } finally {
      html.close();
    }
  });
});
