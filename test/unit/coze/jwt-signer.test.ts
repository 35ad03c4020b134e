import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeProtectedHeader, importSPKI, jwtVerify } from 'jose';
import { createJwtSigner } from '../../../src/coze/jwt-signer.js';
import { createFakeClock } from '../../helpers/clock.js';
import { generateRsaKey } from '../../helpers/keys.js';

const key = generateRsaKey();

describe('jwt-signer', () => {
  it('signs an RS256 JWT that verifies against the public key with every required claim', async () => {
    const clock = createFakeClock(Date.UTC(2026, 5, 1, 12, 0, 0));
    const signer = await createJwtSigner({ appId: '1127900106117', keyId: 'kid-1', privateKeyPem: key.privatePkcs8, audience: 'api.coze.cn', ttlSeconds: 600, now: clock.now });
    const jwt = await signer.sign('user-42');

    const header = decodeProtectedHeader(jwt);
    assert.deepEqual(header, { alg: 'RS256', typ: 'JWT', kid: 'kid-1' });
    const { payload } = await jwtVerify(jwt, await importSPKI(key.publicSpki, 'RS256'), {
      issuer: '1127900106117',
      audience: 'api.coze.cn',
      currentDate: new Date(clock.now()),
      algorithms: ['RS256'],
    });
    const iat = Math.floor(clock.now() / 1000);
    assert.equal(payload.iat, iat);
    assert.equal(payload.exp, iat + 600);
    assert.equal(payload.session_name, 'user-42');
    assert.match(String(payload.jti), /^[0-9a-f]{64}$/, 'jti carries 32 random bytes');
  });

  it('puts a custom_consumer in session_context.device_info, and nothing there without one', async () => {
    const signer = await createJwtSigner({ appId: 'a', keyId: 'k', privateKeyPem: key.privatePkcs8, audience: 'api.coze.cn', ttlSeconds: 60 });
    const publicKey = await importSPKI(key.publicSpki, 'RS256');
    const { payload } = await jwtVerify(await signer.sign('s1', { customConsumer: 'tenant-acme:alice' }), publicKey);
    assert.deepEqual(payload.session_context, { device_info: { custom_consumer: 'tenant-acme:alice' } });
    assert.equal(payload.session_name, 's1');
    const plain = await jwtVerify(await signer.sign('s1', { customConsumer: undefined }), publicKey);
    assert.equal(plain.payload.session_context, undefined);
  });

  it('accepts a PKCS#1 private key', async () => {
    const signer = await createJwtSigner({ appId: 'a', keyId: 'k', privateKeyPem: key.privatePkcs1, audience: 'api.coze.com', ttlSeconds: 60 });
    const { payload } = await jwtVerify(await signer.sign('s'), await importSPKI(key.publicSpki, 'RS256'));
    assert.equal(payload.aud, 'api.coze.com');
  });

  it('never repeats a jti', async () => {
    const signer = await createJwtSigner({ appId: 'a', keyId: 'k', privateKeyPem: key.privatePkcs8, audience: 'api.coze.cn', ttlSeconds: 60 });
    const jtis = new Set<string>();
    const jwts = await Promise.all(Array.from({ length: 500 }, () => signer.sign('same-session')));
    for (const jwt of jwts) {
      const payload = JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as { jti: string };
      jtis.add(payload.jti);
    }
    assert.equal(jtis.size, 500);
  });
});
