import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { exportSPKI, generateKeyPair } from 'jose';
import { createEmulator, generateEmulatorApp } from '../src/emulator/index.js';
import { startRedis } from '../test/helpers/redis.js';
import { clusterMissing, startRedisCluster, type RedisCluster } from '../test/helpers/redis-topologies.js';
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
  /** The quiet counts again on a three-master Redis Cluster (issue 19), or why it was skipped. */
  cluster: { oneSession: Exchanges & { p99Ms: number }; manySessions: Exchanges } | { skipped: string };
  /**
   * One replica, warm token, keep-alive load, medians of interleaved rounds: memory mode twice
   * (two processes: the noise floor), Redis mode on one node and on the cluster (shared leased
   * rate limit on).
   */
  hotPath: { memory: HotPathTarget; memoryAgain: HotPathTarget; redis: HotPathTarget; cluster?: HotPathTarget; seconds: number; redisCallsPerThousand: number; clusterCallsPerThousand?: number };
}

const BUSY_TOKEN_DELAY_MS = 400;

/**
 * Bench section 8 (issues 9, 17 and 19): three gateway processes sharing one redis-server in
 * front of the emulator, which counts the token exchanges it verified; then three sharing a
 * three-master Redis Cluster. Replicas run on CPU 1; Redis, the emulator and the load generator
 * on CPU 0.
 */
export async function measureScaleOut(seconds: number, rounds: number): Promise<ScaleOutFigures> {
  const redis = await startRedis();
  const cluster: RedisCluster | undefined = clusterMissing ? undefined : await startRedisCluster();
  const { app, privateKeyPem } = await generateEmulatorApp();
  const emulator = await createEmulator({ apps: [app] });
  const caller = await generateKeyPair('RS256');
  const publicKey = await exportSPKI(caller.publicKey);
  const base = { COZE_KEY_ID: app.keys[0]?.kid ?? '', COZE_PRIVATE_KEY: privateKeyPem, LOG_LEVEL: 'warn', CACHE_ENCRYPTION_KEY: randomBytes(32).toString('base64') };
  const shared = { ...base, REDIS_URL: redis.url };
  // The gateway as the cluster's narrowest ACL user, given one node as its seed.
  const onCluster = cluster ? { ...base, REDIS_CLUSTER_NODES: cluster.nodes[0] as string, REDIS_USERNAME: cluster.username, REDIS_PASSWORD: cluster.password } : undefined;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 300 });
  const children: Child[] = [];
  const start = async (env: Record<string, string>) => {
    const child = await startGateway(gatewayEnv(emulator.url, publicKey, await freePort(), await freePort(), env), 1);
    children.push(child);
    return child;
  };
  const stopAll = async (list: Child[]) => {
    await Promise.all(list.map((c) => c.stop()));
    for (const c of list) children.splice(children.indexOf(c), 1);
  };

  /** `concurrent` first requests for one new session, then `waves` rounds over `sessions` new ones, each wave through the next replica. */
  async function countExchanges(replicas: Child[], label: string, concurrent: number, sessions: number, waves: number) {
    const portOf = (i: number) => (replicas[i % replicas.length] as Child).port;
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
    const replicas = [await start(shared), await start(shared), await start(shared)];
    const quiet = await countExchanges(replicas, 'quiet', 1000, 500, 20);

    const hogs = [startHog(0), startHog(1)];
    emulator.setTokenFault({ kind: 'delay', ms: BUSY_TOKEN_DELAY_MS });
    let busy: Awaited<ReturnType<typeof countExchanges>>;
    try {
      busy = await countExchanges(replicas, 'busy', 1000, 500, 3);
    } finally {
      emulator.setTokenFault(undefined);
      for (const hog of hogs) hog.kill('SIGKILL');
    }
    await stopAll(replicas);

    let onClusterCounts: ScaleOutFigures['cluster'] = { skipped: clusterMissing || 'no cluster' };
    if (onCluster) {
      const clusterReplicas = [await start(onCluster), await start(onCluster), await start(onCluster)];
      onClusterCounts = await countExchanges(clusterReplicas, 'cluster', 1000, 500, 20);
      await stopAll(clusterReplicas);
    }

    // Fresh processes for every target, so that only the mode differs (not what each has cached).
    const { REDIS_URL: _url, CACHE_ENCRYPTION_KEY: _key, ...withoutRedis } = shared;
    const hotTargets: Record<string, Child> = { memory: await start(withoutRedis), memoryAgain: await start(withoutRedis), redis: await start(shared) };
    if (onCluster) hotTargets.cluster = await start(onCluster);
    const counter = new Redis(redis.url);
    try {
      const hot = await callerJwt(caller.privateKey, 'scale-hot');
      const names = Object.keys(hotTargets);
      const run = (child: Child, s: number) =>
        load(`http://127.0.0.1:${child.port}/v1/bots/b`, { connections: 32, seconds: s, headers: { authorization: `Bearer ${hot}` }, ...(child.proc.pid ? { pid: child.proc.pid } : {}) });
      for (const name of names) await run(hotTargets[name] as Child, 2); // warm-up: token minted, JIT warm, leases grown
      const results: Record<string, LoadResult[]> = Object.fromEntries(names.map((n) => [n, []]));
      const calls: Record<string, number> = { redis: 0, cluster: 0 };
      const callsOf = (name: string) => (name === 'redis' ? scriptCalls([counter]) : name === 'cluster' && cluster ? scriptCalls(cluster.ports.map((p) => cluster.admin(p))) : Promise.resolve(0));
      for (let round = 0; round < rounds; round++) {
        // The order turns each round, so drift over the run does not favour one target.
        for (let k = 0; k < names.length; k++) {
          const name = names[(round + k) % names.length] as string;
          const before = await callsOf(name);
          const r = await run(hotTargets[name] as Child, seconds);
          if (name in calls) calls[name] = (calls[name] as number) + (await callsOf(name)) - before;
          (results[name] as LoadResult[]).push(r);
          process.stderr.write(`  scale-out round ${round + 1} ${name}: ${r.rps.toFixed(0)} req/s, ${r.cpuPerRequestUs.toFixed(0)} µs CPU/req, errors ${r.errors} non2xx ${r.non2xx}\n`);
        }
      }
      const summarize = (rs: LoadResult[]): HotPathTarget => ({ rps: median(rs.map((r) => r.rps)), cpuPerRequestUs: median(rs.map((r) => r.cpuPerRequestUs)), rounds: rs });
      const perThousand = (name: string) => {
        const requests = (results[name] ?? []).reduce((sum, r) => sum + r.requests, 0);
        return requests > 0 ? ((calls[name] as number) * 1000) / requests : 0;
      };
      return {
        oneSession: quiet.oneSession,
        manySessions: quiet.manySessions,
        busy: { oneSession: busy.oneSession, manySessions: busy.manySessions },
        cluster: onClusterCounts,
        hotPath: {
          memory: summarize(results.memory as LoadResult[]),
          memoryAgain: summarize(results.memoryAgain as LoadResult[]),
          redis: summarize(results.redis as LoadResult[]),
          ...(results.cluster ? { cluster: summarize(results.cluster), clusterCallsPerThousand: perThousand('cluster') } : {}),
          seconds,
          redisCallsPerThousand: perThousand('redis'),
        },
      };
    } finally {
      counter.disconnect();
    }
  } finally {
    agent.destroy();
    await Promise.all(children.map((c) => c.stop()));
    await emulator.close();
    await redis.stop();
    await cluster?.stop();
  }
}

/** Scripts the Redis nodes have run so far, from their own statistics: every call the gateway makes is one. */
async function scriptCalls(nodes: Redis[]): Promise<number> {
  const stats = await Promise.all(nodes.map((n) => n.info('commandstats')));
  return stats.flatMap((s) => [...s.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)]).reduce((sum, m) => sum + Number(m[1]), 0);
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
  const { memory, memoryAgain, redis, cluster } = f.hotPath;
  note('## 8. Three replicas sharing Redis (issues 9, 17 and 19)');
  note('');
  note('Three gateway processes on CPU 1, one redis-server, the real emulator counting the token exchanges it verified. Target: exchanges = sessions, exactly.');
  note('');
  note(`- 1,000 concurrent first requests for one new session, spread over the 3 replicas: ${counted(f.oneSession)}; p99 ${f.oneSession.p99Ms.toFixed(1)} ms`);
  note(`- 10,000 requests over 500 new sessions, each wave through the next replica: ${counted(f.manySessions)}`);
  note(`- busy machine (a spinning process on each CPU, token endpoint answering in ${BUSY_TOKEN_DELAY_MS} ms): 1,000 concurrent firsts: ${counted(f.busy.oneSession)}; 1,500 requests over 500 new sessions: ${counted(f.busy.manySessions)}`);
  if ('skipped' in f.cluster) note(`- three-master Redis Cluster: skipped (${f.cluster.skipped})`);
  else {
    note(`- the same three replicas on a three-master Redis Cluster (one node as the seed, the gateway as its narrowest ACL user): 1,000 concurrent firsts: ${counted(f.cluster.oneSession)}; p99 ${f.cluster.oneSession.p99Ms.toFixed(1)} ms`);
    note(`- on the cluster, 10,000 requests over 500 new sessions: ${counted(f.cluster.manySessions)}`);
  }
  note('');
  note(`One fresh gateway process per target, warm token, 32 keep-alive connections; medians of ${memory.rounds.length} interleaved rounds of ${f.hotPath.seconds} s. Memory mode runs twice (two processes) for the noise floor; Redis mode (one node${cluster ? ', and the cluster' : ''}) has the shared rate limit on (decided locally from leased allowance).`);
  note('');
  note('| target | req/s | CPU µs/req | rounds (req/s) |');
  note('|---|---|---|---|');
  const row = (label: string, t: HotPathTarget) => note(`| ${label} | ${t.rps.toFixed(0)} | ${t.cpuPerRequestUs.toFixed(0)} | ${t.rounds.map((r) => r.rps.toFixed(0)).join(', ')} |`);
  row('memory mode (A)', memory);
  row("memory mode again (A')", memoryAgain);
  row('Redis mode, one node', redis);
  if (cluster) row('Redis mode, three-master cluster', cluster);
  note('');
  const ratio = (t: HotPathTarget) => `${(t.rps / memory.rps).toFixed(2)}x** throughput (target ≥ 0.9x), ${(t.cpuPerRequestUs / memory.cpuPerRequestUs).toFixed(2)}x CPU per request`;
  note(`- **Redis mode / memory mode: ${ratio(redis)}; noise floor A'/A: ${(memoryAgain.rps / memory.rps).toFixed(2)}x throughput, ${(memoryAgain.cpuPerRequestUs / memory.cpuPerRequestUs).toFixed(2)}x CPU`);
  if (cluster) note(`- **Cluster mode / memory mode: ${ratio(cluster)}`);
  note(`- Redis calls (scripts run, counted by redis-server) during the Redis-mode rounds: ${f.hotPath.redisCallsPerThousand.toFixed(2)} per 1,000 requests (before issue 17: 1,000, one rate-limit call each)${f.hotPath.clusterCallsPerThousand !== undefined ? `; on the cluster (summed over its nodes): ${f.hotPath.clusterCallsPerThousand.toFixed(2)}` : ''}`);
}

/** `npx tsx bench/scale-out.ts`: section 8 alone (build first: the replicas run dist/main.js). */
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const lines: string[] = [];
  reportScaleOut(await measureScaleOut(Number(process.env.BENCH_SECONDS ?? 6), Number(process.env.BENCH_ROUNDS ?? 3)), (line = '') => lines.push(line));
  process.stdout.write(`${lines.join('\n')}\n`);
  process.exit(0);
}
