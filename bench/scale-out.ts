import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { exportSPKI, generateKeyPair } from 'jose';
import { createEmulator, generateEmulatorApp } from '../src/emulator/index.js';
import { startRedis } from '../test/helpers/redis.js';
import { callerJwt, freePort, timedGet, gatewayEnv, interleave, load, median, percentile, ratios, startGateway, type Child, type LoadResult } from './lib.js';
import { fixed, ratio, verdict, type Report } from './report.js';

export interface ScaleOutFigures {
  oneSession: { exchanges: number; ok: number; p99Ms: number };
  manySessions: { exchanges: number; ok: number };
  /**
   * Keep-alive load on one replica with a warm token, interleaved rounds: two replicas without
   * Redis (memory, and memory again as the noise floor) and one with Redis (rate limit on).
   */
  hotPath: Map<string, LoadResult[]>;
}

const MEMORY = 'memory';
const MEMORY_AGAIN = "memory (A')";
const REDIS = 'redis';

/**
 * Three gateway processes sharing one redis-server in front of the emulator (issue 9). The
 * emulator counts the token exchanges it verified. Replicas run on CPU 1, Redis, the emulator
 * and the load generator on CPU 0.
 */
export async function measureScaleOut(settings: { rounds: number; seconds: number }): Promise<ScaleOutFigures> {
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
    const memoryOnly = [
      await startGateway(gatewayEnv(emulator.url, publicKey, await freePort(), await freePort(), withoutRedis), 1),
      await startGateway(gatewayEnv(emulator.url, publicKey, await freePort(), await freePort(), withoutRedis), 1),
    ] as const;
    const hot = await callerJwt(caller.privateKey, 'scale-hot');
    const targets = [
      { name: MEMORY, child: memoryOnly[0] },
      { name: MEMORY_AGAIN, child: memoryOnly[1] },
      { name: REDIS, child: replicas[0] as Child },
    ];
    const run = (child: Child, seconds: number, counted: boolean) =>
      load(`http://127.0.0.1:${child.port}/v1/bots/b`, { connections: 32, seconds, headers: { authorization: `Bearer ${hot}` }, ...(counted && child.proc.pid ? { pid: child.proc.pid } : {}) });
    const hotPath = await interleave(
      targets,
      settings.rounds,
      (t) => run(t.child, settings.seconds, true),
      (t) => run(t.child, 1, false),
    );
    await Promise.all(memoryOnly.map((c) => c.stop()));
    return { oneSession, manySessions, hotPath };
  } finally {
    agent.destroy();
    await Promise.all(replicas.map((r) => r.stop()));
    await emulator.close();
    await redis.stop();
  }
}

/** Section 8: exchanges across three replicas, and Redis mode against memory mode. */
export async function reportScaleOut(report: Report, settings: { rounds: number; seconds: number }): Promise<void> {
  const scale = await measureScaleOut(settings);
  report.note('## 8. Three replicas sharing Redis');
  report.note();
  report.note('Three gateway processes, one redis-server, the real emulator counting exchanges.');
  report.note();
  report.note(`- 1,000 concurrent first requests for one new session, spread over the 3 replicas: **${scale.oneSession.exchanges} exchange(s)** (target 1: ${scale.oneSession.exchanges === 1 ? 'met' : 'NOT met'}); ${scale.oneSession.ok} answered 200; p99 ${scale.oneSession.p99Ms.toFixed(1)} ms`);
  report.note(`- 10,000 requests over 500 sessions, each wave through a different replica: **${scale.manySessions.exchanges} exchanges** (target 500: ${scale.manySessions.exchanges === 500 ? 'met' : 'NOT met'}); ${scale.manySessions.ok} answered 200`);
  const h = scale.hotPath;
  const m = (name: string, f: (r: LoadResult) => number) => fixed(median((h.get(name) ?? []).map(f)));
  const rps = (r: LoadResult) => r.rps;
  const cpu = (r: LoadResult) => r.cpuPerRequestUs;
  const toMemory = ratios(h, REDIS, MEMORY, rps);
  report.note(`- one replica, warm token, 32 connections, ${settings.rounds} interleaved rounds of ${settings.seconds} s: without Redis ${m(MEMORY, rps)} req/s (${m(MEMORY, cpu)} µs CPU/req), with Redis and the shared rate limit ${m(REDIS, rps)} req/s (${m(REDIS, cpu)} µs CPU/req)`);
  report.note(`- **noise floor** (${MEMORY_AGAIN} / ${MEMORY}): req/s ${ratio(ratios(h, MEMORY_AGAIN, MEMORY, rps))}, CPU/req ${ratio(ratios(h, MEMORY_AGAIN, MEMORY, cpu))}`);
  report.note(`- Redis mode / memory mode, req/s: **${ratio(toMemory)}** (target ≥ 0.9x: ${verdict(toMemory?.median, '>=', 0.9)}); CPU/req ${ratio(ratios(h, REDIS, MEMORY, cpu))}`);
  report.note();
}
