import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { Redis } from 'ioredis';
import { exportSPKI, generateKeyPair } from 'jose';
import { createEmulator, generateEmulatorApp } from '../src/emulator/index.js';
import { startRedis } from '../test/helpers/redis.js';
import { callerJwt, freePort, gatewayEnv, hasTaskset, load, median, percentile, startGateway, timedGet, type Child, type LoadResult } from './lib.js';

interface Exchanges {
  sessions: number;
  requests: number;
  exchanges: number;
  ok: number;
  /** Answers other than 200, by status. */
  others: Record<number, number>;
}

function othersOf(statuses: number[]): Record<number, number> {
  const others: Record<number, number> = {};
  for (const s of statuses) if (s !== 200) others[s] = (others[s] ?? 0) + 1;
  return others;
}

interface HotPathTarget {
  rps: number;
  cpuPerRequestUs: number;
  rounds: LoadResult[];
}

export interface ScaleOutFigures {
  /** Quiet machine: 1,000 concurrent first requests for one session, and 10,000 over 500 sessions. */
  oneSession: Exchanges & { p99Ms: number };
  manySessions: Exchanges;
  /** The same with a CPU hog on each CPU and a token endpoint that answers in 400 ms. */
  busy: { oneSession: Exchanges; manySessions: Exchanges };
  /**
   * One replica, warm token, keep-alive load, medians of interleaved rounds: memory mode twice
   * (two processes: the noise floor) and Redis mode (shared leased rate limit on).
   */
  hotPath: { memory: HotPathTarget; memoryAgain: HotPathTarget; redis: HotPathTarget; seconds: number; redisCallsPerThousand: number };
}

const BUSY_TOKEN_DELAY_MS = 400;

/**
 * Bench section 8 (issues 9 and 17): three gateway processes sharing one redis-server in front
 * of the emulator, which counts the token exchanges it verified. Replicas run on CPU 1; Redis,
 * the emulator and the load generator on CPU 0.
 */
export async function measureScaleOut(seconds: number, rounds: number): Promise<ScaleOutFigures> {
  const redis = await startRedis();
  const { app, privateKeyPem } = await generateEmulatorApp();
  const emulator = await createEmulator({ apps: [app] });
  const caller = await generateKeyPair('RS256');
  const publicKey = await exportSPKI(caller.publicKey);
  const shared = { COZE_KEY_ID: app.keys[0]?.kid ?? '', COZE_PRIVATE_KEY: privateKeyPem, LOG_LEVEL: 'warn', REDIS_URL: redis.url, CACHE_ENCRYPTION_KEY: randomBytes(32).toString('base64') };
  const replicas: Child[] = [];
  for (let i = 0; i < 3; i++) replicas.push(await startGateway(gatewayEnv(emulator.url, publicKey, await freePort(), await freePort(), shared), 1));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 300 });
  const portOf = (i: number) => (replicas[i % 3] as Child).port;

  /** `concurrent` first requests for one new session, then `waves` rounds over `sessions` new ones, each wave through the next replica. */
  async function countExchanges(label: string, concurrent: number, sessions: number, waves: number) {
    emulator.reset();
    const one = await callerJwt(caller.privateKey, `${label}-one`);
    const first = await Promise.all(Array.from({ length: concurrent }, (_, i) => timedGet(portOf(i), one, agent)));
    const oneSession = {
      sessions: 1,
      requests: concurrent,
      exchanges: emulator.stats.exchanges,
      ok: first.filter((r) => r.status === 200).length,
      others: othersOf(first.map((r) => r.status)),
      p99Ms: percentile(first.map((r) => r.ms), 99),
    };
    emulator.reset();
    const jwts = await Promise.all(Array.from({ length: sessions }, (_, i) => callerJwt(caller.privateKey, `${label}-${i}`)));
    const statuses: number[] = [];
    for (let wave = 0; wave < waves; wave++) statuses.push(...(await Promise.all(jwts.map((jwt, i) => timedGet(portOf(i + wave), jwt, agent)))).map((r) => r.status));
    const ok = statuses.filter((st) => st === 200).length;
    return { oneSession, manySessions: { sessions, requests: sessions * waves, exchanges: emulator.stats.exchanges, ok, others: othersOf(statuses) } };
  }

  try {
    const quiet = await countExchanges('quiet', 1000, 500, 20);

    const hogs = [startHog(0), startHog(1)];
    emulator.setTokenFault({ kind: 'delay', ms: BUSY_TOKEN_DELAY_MS });
    let busy: Awaited<ReturnType<typeof countExchanges>>;
    try {
      busy = await countExchanges('busy', 1000, 500, 3);
    } finally {
      emulator.setTokenFault(undefined);
      for (const hog of hogs) hog.kill('SIGKILL');
    }

    // Fresh processes for all three, so that only the mode differs (not what each has cached).
    const { REDIS_URL: _url, CACHE_ENCRYPTION_KEY: _key, ...withoutRedis } = shared;
    const fresh = async (env: Record<string, string>) => startGateway(gatewayEnv(emulator.url, publicKey, await freePort(), await freePort(), env), 1);
    const hotTargets = { memory: await fresh(withoutRedis), memoryAgain: await fresh(withoutRedis), redis: await fresh(shared) };
    const counter = new Redis(redis.url);
    try {
      const hot = await callerJwt(caller.privateKey, 'scale-hot');
      const names = Object.keys(hotTargets) as Array<keyof typeof hotTargets>;
      const run = (child: Child, s: number) =>
        load(`http://127.0.0.1:${child.port}/v1/bots/b`, { connections: 32, seconds: s, headers: { authorization: `Bearer ${hot}` }, ...(child.proc.pid ? { pid: child.proc.pid } : {}) });
      for (const name of names) await run(hotTargets[name], 2); // warm-up: token minted, JIT warm, leases grown
      const results: Record<keyof typeof hotTargets, LoadResult[]> = { memory: [], memoryAgain: [], redis: [] };
      let redisCalls = 0;
      for (let round = 0; round < rounds; round++) {
        // The order turns each round, so drift over the run does not favour one target.
        for (let k = 0; k < names.length; k++) {
          const name = names[(round + k) % names.length] as keyof typeof hotTargets;
          const before = name === 'redis' ? await scriptCalls(counter) : 0;
          const r = await run(hotTargets[name], seconds);
          if (name === 'redis') redisCalls += (await scriptCalls(counter)) - before;
          results[name].push(r);
          process.stderr.write(`  scale-out round ${round + 1} ${name}: ${r.rps.toFixed(0)} req/s, ${r.cpuPerRequestUs.toFixed(0)} µs CPU/req, errors ${r.errors} non2xx ${r.non2xx}\n`);
        }
      }
      const summarize = (rs: LoadResult[]): HotPathTarget => ({ rps: median(rs.map((r) => r.rps)), cpuPerRequestUs: median(rs.map((r) => r.cpuPerRequestUs)), rounds: rs });
      const redisRequests = results.redis.reduce((sum, r) => sum + r.requests, 0);
      return {
        oneSession: quiet.oneSession,
        manySessions: quiet.manySessions,
        busy: { oneSession: busy.oneSession, manySessions: busy.manySessions },
        hotPath: {
          memory: summarize(results.memory),
          memoryAgain: summarize(results.memoryAgain),
          redis: summarize(results.redis),
          seconds,
          redisCallsPerThousand: redisRequests > 0 ? (redisCalls * 1000) / redisRequests : 0,
        },
      };
    } finally {
      counter.disconnect();
      await Promise.all(Object.values(hotTargets).map((m) => m.stop()));
    }
  } finally {
    agent.destroy();
    await Promise.all(replicas.map((r) => r.stop()));
    await emulator.close();
    await redis.stop();
  }
}

/** Scripts redis-server has run so far, from its own statistics: every call the gateway makes is one. */
async function scriptCalls(redis: Redis): Promise<number> {
  const stats = await redis.info('commandstats');
  return [...stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** A process that spins on `cpu` until killed: the busy machine. */
function startHog(cpu: number): ChildProcess {
  const argv = [process.execPath, '-e', 'for (;;) {}'];
  const command = hasTaskset() ? ['taskset', '-c', String(cpu), ...argv] : argv;
  return spawn(command[0] as string, command.slice(1), { stdio: 'ignore' });
}

/** Section 8 of bench/RESULTS.md. */
export function reportScaleOut(f: ScaleOutFigures, note: (line?: string) => void): void {
  const counted = (e: Exchanges) => {
    const others = Object.entries(e.others).map(([status, n]) => `${n} × ${status}`);
    return `**${e.exchanges} exchange(s) for ${e.sessions} session(s)**; ${e.ok} of ${e.requests} answered 200${others.length ? ` (others: ${others.join(', ')})` : ''}`;
  };
  const { memory, memoryAgain, redis } = f.hotPath;
  note('## 8. Three replicas sharing Redis (issues 9 and 17)');
  note('');
  note('Three gateway processes on CPU 1, one redis-server, the real emulator counting the token exchanges it verified. Target: exchanges = sessions, exactly.');
  note('');
  note(`- 1,000 concurrent first requests for one new session, spread over the 3 replicas: ${counted(f.oneSession)}; p99 ${f.oneSession.p99Ms.toFixed(1)} ms`);
  note(`- 10,000 requests over 500 new sessions, each wave through the next replica: ${counted(f.manySessions)}`);
  note(`- busy machine (a spinning process on each CPU, token endpoint answering in ${BUSY_TOKEN_DELAY_MS} ms): 1,000 concurrent firsts: ${counted(f.busy.oneSession)}; 1,500 requests over 500 new sessions: ${counted(f.busy.manySessions)}`);
  note('');
  note(`One fresh gateway process per target, warm token, 32 keep-alive connections; medians of ${memory.rounds.length} interleaved rounds of ${f.hotPath.seconds} s. Memory mode runs twice (two processes) for the noise floor; Redis mode has the shared rate limit on (decided locally from leased allowance).`);
  note('');
  note('| target | req/s | CPU µs/req | rounds (req/s) |');
  note('|---|---|---|---|');
  const row = (label: string, t: HotPathTarget) => note(`| ${label} | ${t.rps.toFixed(0)} | ${t.cpuPerRequestUs.toFixed(0)} | ${t.rounds.map((r) => r.rps.toFixed(0)).join(', ')} |`);
  row('memory mode (A)', memory);
  row("memory mode again (A')", memoryAgain);
  row('Redis mode', redis);
  note('');
  note(`- **Redis mode / memory mode: ${(redis.rps / memory.rps).toFixed(2)}x** throughput (target ≥ 0.9x), ${(redis.cpuPerRequestUs / memory.cpuPerRequestUs).toFixed(2)}x CPU per request; noise floor A'/A: ${(memoryAgain.rps / memory.rps).toFixed(2)}x throughput, ${(memoryAgain.cpuPerRequestUs / memory.cpuPerRequestUs).toFixed(2)}x CPU`);
  note(`- Redis calls (scripts run, counted by redis-server) during the Redis-mode rounds: ${f.hotPath.redisCallsPerThousand.toFixed(2)} per 1,000 requests (before issue 17: 1,000, one rate-limit call each)`);
}
