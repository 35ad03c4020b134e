import assert from 'node:assert/strict';
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
  const sign = (subject: string, issuer = 'https://idp') => new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject(subject).setIssuer(issuer).setExpirationTime('1h').sign(privateKey);
  const source = () => createJwtSource({ publicKey, issuer: ['https://idp'], subjectClaim: 'sub', clockToleranceSeconds: 30, jwksCooldownSeconds: 30, jwksCacheMaxAgeSeconds: 600 });
  const request = (jwt: string) => ({ headers: { authorization: `Bearer ${jwt}` }, remoteAddress: '127.0.0.1' });

  before(async () => {
    const pair = await generateKeyPair('RS256');
    privateKey = pair.privateKey;
    publicKey = await exportSPKI(pair.publicKey);
    counter = countVerifications();
  });
  after(() => counter.restore());

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
});
