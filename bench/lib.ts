import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

/** utime + stime of a process, in seconds (from /proc; 0 where /proc is missing). */
export function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
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

/** A closed-loop keep-alive load with autocannon, plus the CPU the measured process spent. */
export async function load(url: string, options: { headers?: Record<string, string>; connections: number; seconds: number; pid?: number; overallRate?: number }): Promise<LoadResult> {
  const cpuBefore = cpuSeconds(options.pid);
  const result = await autocannon({
    url,
    connections: options.connections,
    duration: options.seconds,
    headers: options.headers ?? {},
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
  });
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

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** The env of a gateway child process for the bench: caller JWTs from a static key, no rate limit in the way. */
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

/** `node dist/main.js serve` pinned to `cpu`; `nodeArgs` go before the script (--expose-gc, --cpu-prof). */
export async function startGateway(env: Record<string, string>, cpu: number, nodeArgs: string[] = []): Promise<Child> {
  const args = [...nodeArgs, join(ROOT, 'dist', 'main.js'), 'serve'];
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
