import { performance } from 'node:perf_hooks';
import { exportSPKI, generateKeyPair, jwtVerify, SignJWT, type CryptoKey } from 'jose';
import { createJwtSource } from '../src/auth/jwt-source.js';

/**
 * Caller-JWT verification cost for RS256, ES256 and HS256: jose alone (one in flight, and 32
 * in flight, since each verify is a thread-pool hop), and the gateway's jwt-source on a token
 * it has verified before (its cache by token hash).
 */
const DURATION_MS = 1500;

async function opsPerSecond(fn: () => Promise<unknown>, inFlight: number): Promise<number> {
  let done = 0;
  const end = performance.now() + DURATION_MS;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        await fn();
        done += 1;
      }
    }),
  );
  return Math.round((done * 1000) / DURATION_MS);
}

const results: Record<string, { serial: number; parallel: number; cached: number }> = {};
for (const alg of ['RS256', 'ES256', 'HS256'] as const) {
  let verifyKey: CryptoKey | Uint8Array;
  let signKey: CryptoKey | Uint8Array;
  let source;
  const common = { issuer: ['bench'], audience: ['bench'], subjectClaim: 'sub', clockToleranceSeconds: 30, jwksCooldownSeconds: 30, jwksCacheMaxAgeSeconds: 600, algorithms: [alg] };
  if (alg === 'HS256') {
    const secret = new TextEncoder().encode('a-bench-secret-that-is-32-bytes-long!!');
    verifyKey = signKey = secret;
    source = await createJwtSource({ ...common, secret: 'a-bench-secret-that-is-32-bytes-long!!' });
  } else {
    const pair = await generateKeyPair(alg, { extractable: true });
    verifyKey = pair.publicKey;
    signKey = pair.privateKey;
    source = await createJwtSource({ ...common, publicKey: await exportSPKI(pair.publicKey) });
  }
  const token = await new SignJWT({}).setProtectedHeader({ alg }).setSubject('u').setIssuer('bench').setAudience('bench').setExpirationTime('1h').sign(signKey);
  const verify = () => jwtVerify(token, verifyKey, { algorithms: [alg], issuer: 'bench', audience: 'bench' });
  await opsPerSecond(verify, 4);
  const req = { headers: { authorization: `Bearer ${token}` }, remoteAddress: '127.0.0.1' };
  results[alg] = {
    serial: await opsPerSecond(verify, 1),
    parallel: await opsPerSecond(verify, 32),
    cached: await opsPerSecond(async () => source.authenticate(req), 1),
  };
}
console.log(JSON.stringify(results));
