import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { exportSPKI, generateKeyPair } from 'jose';
import { createEmulator, generateEmulatorApp } from '../src/emulator/index.js';
import { startRedis } from '../test/helpers/redis.js';
import { callerJwt, freePort, timedGet, gatewayEnv, load, percentile, startGateway, type Child, type LoadResult } from './lib.js';

export interface ScaleOutFigures {
  oneSession: { exchanges: number; ok: number; p99Ms: number };
  manySessions: { exchanges: number; ok: number };
  /** Keep-alive load on one replica with a warm token: without Redis, and with Redis (rate limit on, one Lua call per request). */
  hotPath: { memory: LoadResult; redis: LoadResult };
}

/**
 * Three gateway processes sharing one redis-server in front of the emulator (issue 9). The
 * emulator counts the token exchanges it verified. Replicas run on CPU 1, Redis, the emulator
 * and the load generator on CPU 0.
 */
export async function measureScaleOut(seconds: number): Promise<ScaleOutFigures> {
  const redis = await startRedis();
  const { app, privateKeyPem } = await generateEmulatorApp();
  const emulator = await createEmulator({ apps: [app] });
  const caller = await generateKeyPair('RS256');
  const publicKey = await exportSPKI(caller.publicKey);
  const shared = { COZE_KEY_ID: app.keys[0]?.kid ?? '', COZE_PRIVATE_KEY: privateKeyPem, LOG_LEVEL: 'warn', REDIS_URL: redis.url, CACHE_ENCRYPTION_KEY: randomBytes(32).toString('base64') };
  const replicas: Child[] = [];
  for (let i = 0; i < 3; i++) replicas.push(await startGateway(gatewayEnv(emulator.url, publicKey, await freePort(), await freePort(), shared), 1));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 300 });
  const get = (port: number, jwt: string) => timedGet(port, jwt, agent);
  const portOf = (i: number) => (replicas[i % 3] as Child).port;

  try {
    const one = await callerJwt(caller.privateKey, 'scale-one');
    const first = await Promise.all(Array.from({ length: 1000 }, (_, i) => get(portOf(i), one)));
    const oneSession = { exchanges: emulator.stats.exchanges, ok: first.filter((r) => r.status === 200).length, p99Ms: percentile(first.map((r) => r.ms), 99) };

    emulator.reset();
    const jwts = await Promise.all(Array.from({ length: 500 }, (_, i) => callerJwt(caller.privateKey, `scale-${i}`)));
    let ok = 0;
    for (let wave = 0; wave < 20; wave++) {
      const results = await Promise.all(jwts.map((jwt, i) => get(portOf(i + wave), jwt)));
      ok += results.filter((r) => r.status === 200).length;
    }
    const manySessions = { exchanges: emulator.stats.exchanges, ok };

    const { REDIS_URL: _url, CACHE_ENCRYPTION_KEY: _key, ...withoutRedis } = shared;
    const memoryOnly = await startGateway(gatewayEnv(emulator.url, publicKey, await freePort(), await freePort(), withoutRedis), 1);
    const hot = await callerJwt(caller.privateKey, 'scale-hot');
    const target = (port: number) => `http://127.0.0.1:${port}/v1/bots/b`;
    const options = (child: Child) => ({ connections: 32, seconds, headers: { authorization: `Bearer ${hot}` }, ...(child.proc.pid ? { pid: child.proc.pid } : {}) });
    await load(target(memoryOnly.port), { ...options(memoryOnly), seconds: 2 });
    await load(target(portOf(0)), { ...options(replicas[0] as Child), seconds: 2 });
    const memory = await load(target(memoryOnly.port), options(memoryOnly));
    const withRedis = await load(target(portOf(0)), options(replicas[0] as Child));
    await memoryOnly.stop();
    return { oneSession, manySessions, hotPath: { memory, redis: withRedis } };
  } finally {
    agent.destroy();
    await Promise.all(replicas.map((r) => r.stop()));
    await emulator.close();
    await redis.stop();
  }
}
