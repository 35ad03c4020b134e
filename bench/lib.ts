import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { SignJWT, type CryptoKey } from 'jose';

export const ROOT = new URL('..', import.meta.url).pathname;

export interface Child {
  proc: ChildProcess;
  port: number;
  stop(): Promise<void>;
}

/** Starts a process pinned to `cpu` (when taskset exists) that prints its port as its first line. */
export function startProcess(command: string, args: string[], env: Record<string, string>, cpu?: number, portFromEnv?: number): Promise<Child> {
  const argv = cpu !== undefined && hasTaskset() ? ['taskset', '-c', String(cpu), command, ...args] : [command, ...args];
  const proc = spawn(argv[0] as string, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  if (portFromEnv !== undefined) {
    proc.stdout?.resume();
    return waitForPort(portFromEnv).then(() => ({ proc, port: portFromEnv, stop }));
  }
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      const line = buffered.split('\n')[0];
      if (buffered.includes('\n') && line) {
        proc.stdout?.off('data', onData);
        proc.stdout?.resume();
        resolve({ proc, port: Number(line.trim()), stop });
      }
    };
    proc.stdout?.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`${command} exited with ${code}`)));
  });
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(() => true, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing answered on port ${port}`);
}

let tasksetKnown: boolean | undefined;
export function hasTaskset(): boolean {
  if (tasksetKnown === undefined) {
    try {
      readFileSync('/usr/bin/taskset');
      tasksetKnown = true;
    } catch {
      tasksetKnown = false;
    }
  }
  return tasksetKnown;
}

/** utime + stime of processes, in seconds (from /proc; 0 where /proc is missing). */
export function cpuSeconds(pids: number | readonly number[] | undefined): number {
  let total = 0;
  for (const pid of typeof pids === 'number' ? [pids] : (pids ?? [])) {
    const fields = statFields(pid);
    if (fields) total += (Number(fields[11]) + Number(fields[12])) / 100;
  }
  return total;
}

/** The fields of /proc/PID/stat after the command name (field 3 onwards). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** A process and its direct children (nginx's master and worker). */
export function withChildren(pid: number): number[] {
  const pids = [pid];
  for (const entry of readdirSync('/proc')) {
    if (/^\d+$/.test(entry) && statFields(Number(entry))?.[1] === String(pid)) pids.push(Number(entry));
  }
  return pids;
}

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  non2xx: number;
  cpuPerRequestUs: number;
}

/** A closed-loop keep-alive load with autocannon, plus the CPU the measured processes spent. */
export async function load(url: string, options: { headers?: Record<string, string>; connections: number; seconds: number; pid?: number | readonly number[] }): Promise<LoadResult> {
  const cpuBefore = cpuSeconds(options.pid);
  const result = await autocannon({ url, connections: options.connections, duration: options.seconds, headers: options.headers ?? {} });
  const cpu = cpuSeconds(options.pid) - cpuBefore;
  const requests = result.requests.total;
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    cpuPerRequestUs: requests > 0 ? (cpu * 1e6) / requests : 0,
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The median of per-round values and their range: how a figure moved from round to round. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(values: number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), n: values.length };
}

/**
 * Interleaved rounds: every target once per round (A B C, then B C A, ...: the order rotates so
 * no target always follows the same one), each slice preceded by `warmUp` (an unmeasured burst:
 * a process idle since its last slice starts cold). Returns each target's per-round results.
 */
export async function interleave<T extends { name: string }, R>(
  targets: readonly T[],
  rounds: number,
  measure: (target: T, round: number) => Promise<R>,
  warmUp?: (target: T) => Promise<unknown>,
): Promise<Map<string, R[]>> {
  const results = new Map<string, R[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < targets.length; i++) {
      const target = targets[(i + round) % targets.length] as T;
      if (warmUp) await warmUp(target);
      const result = await measure(target, round);
      (results.get(target.name) as R[]).push(result);
    }
  }
  return results;
}

/** Per-round ratios a/b of two targets measured in the same rounds. */
export function ratios<R>(results: Map<string, R[]>, a: string, b: string, value: (r: R) => number): Spread | undefined {
  const as = results.get(a);
  const bs = results.get(b);
  if (!as?.length || !bs?.length) return undefined;
  return spread(as.map((r, i) => value(r) / value(bs[i] as R)));
}

/** Per-round differences a-b of two targets measured in the same rounds. */
export function differences<R>(results: Map<string, R[]>, a: string, b: string, value: (r: R) => number): Spread | undefined {
  const as = results.get(a);
  const bs = results.get(b);
  if (!as?.length || !bs?.length) return undefined;
  return spread(as.map((r, i) => value(r) - value(bs[i] as R)));
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/**
 * The env of a gateway child process for the bench: caller JWTs from a static key, no rate limit
 * in the way, and no cap on one identity's requests in flight (the stampede is 1,000 concurrent
 * first requests of one user, which the default cap of 64 would answer 429 beyond the 64th).
 */
export function gatewayEnv(cozeUrl: string, publicKey: string, port: number, adminPort: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    COZE_BASE_URL: cozeUrl,
    COZE_AUDIENCE: 'api.coze.cn',
    COZE_APP_ID: '1127900106117',
    COZE_KEY_ID: 'bench-kid',
    IDENTITY_JWT_PUBLIC_KEY: publicKey,
    IDENTITY_JWT_ISSUER: 'https://bench-idp',
    IDENTITY_JWT_AUDIENCE: 'bench',
    ALLOWED_BOT_IDS: 'bench,b',
    RATE_LIMIT_RPM: '100000000',
    RATE_LIMIT_MAX_CONCURRENT: '0',
    LOG_LEVEL: 'info',
    PORT: String(port),
    HOST: '127.0.0.1',
    ADMIN_PORT: String(adminPort),
    ADMIN_HOST: '127.0.0.1',
    ...extra,
  };
}

export async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

export function callerJwt(key: CryptoKey, subject: string): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject(subject).setIssuer('https://bench-idp').setAudience('bench').setExpirationTime('2h').sign(key);
}

/**
 * `node dist/main.js serve` pinned to `cpu`; `nodeArgs` go before the script (--expose-gc,
 * --cpu-prof). `root` is another build's checkout (bench:compare).
 */
export async function startGateway(env: Record<string, string>, cpu: number, nodeArgs: string[] = [], root = ROOT): Promise<Child> {
  const args = [...nodeArgs, join(root, 'dist', 'main.js'), 'serve'];
  return startProcess(process.execPath, args, env, cpu, Number(env.PORT));
}

/** One GET /v1/bots/b through the gateway on `port`: its status and how long it took. */
export function timedGet(port: number, jwt: string, agent: http.Agent): Promise<{ status: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    http
      .get({ host: '127.0.0.1', port, path: '/v1/bots/b', agent, headers: { authorization: `Bearer ${jwt}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }));
      })
      .on('error', reject);
  });
}
