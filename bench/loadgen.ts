import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cpuSeconds, hasTaskset, ROOT } from './lib.js';

const run = promisify(execFile);
const TMP = join(ROOT, 'bench', '.tmp');
const BINARY = join(TMP, 'loadgen');

/** Percentiles in microseconds, as bench/loadgen/main.go prints them. */
export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface LoadgenResult {
  sent: number;
  ok: number;
  non2xx: number;
  errors: number;
  seconds: number;
  achievedRate: number;
  connectionsOpened: number;
  /** From each request's scheduled send time (rate mode) or the burst's start (burst mode). */
  latencyUs: Percentiles;
  /** How late the generator itself put requests on the wire. */
  sendLagUs: Percentiles;
  cpuSeconds: number;
  /** CPU time the processes under test spent per measured request (from /proc). */
  cpuPerRequestUs: number;
}

let built: string | undefined | null = null;

/**
 * Compiles bench/loadgen/main.go into bench/.tmp (Go's build cache there too, not in the
 * user's home). Undefined when Go is not installed: the sections that need it say so.
 */
export function buildLoadgen(): string | undefined {
  if (built !== null) return built;
  const go = spawnSync('go', ['version']);
  if (go.status !== 0) return (built = undefined);
  mkdirSync(TMP, { recursive: true });
  const result = spawnSync('go', ['build', '-o', BINARY, 'main.go'], {
    cwd: join(ROOT, 'bench', 'loadgen'),
    env: { ...process.env, GOCACHE: join(TMP, 'go-cache'), GOPATH: join(TMP, 'gopath'), GO111MODULE: 'off', CGO_ENABLED: '0' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (result.status !== 0 || !existsSync(BINARY)) throw new Error('go build of bench/loadgen failed');
  return (built = BINARY);
}

export interface LoadgenTarget {
  url: string;
  headers?: Record<string, string>;
  /** The processes under test, whose CPU is counted per request. */
  pids?: readonly number[];
}

async function loadgen(target: LoadgenTarget, args: string[]): Promise<LoadgenResult> {
  const binary = buildLoadgen();
  if (!binary) throw new Error('Go is not installed: the open-loop generator cannot be built');
  const headers = Object.entries(target.headers ?? {}).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
  const argv = [binary, '-url', target.url, ...headers, ...args];
  // On CPU 0 with the origin, like autocannon: CPU 1 belongs to the process under test.
  const [command, ...rest] = hasTaskset() ? ['taskset', '-c', '0', ...argv] : argv;
  const cpuBefore = cpuSeconds(target.pids);
  // Asynchronous on purpose: the emulator may be serving from this very process.
  const { stdout } = await run(command as string, rest, { encoding: 'utf8', maxBuffer: 1 << 20 });
  const cpu = cpuSeconds(target.pids) - cpuBefore;
  const result = JSON.parse(stdout) as Omit<LoadgenResult, 'cpuPerRequestUs'>;
  const requests = result.ok + result.non2xx;
  return { ...result, cpuPerRequestUs: requests > 0 ? (cpu * 1e6) / requests : 0 };
}

/**
 * Open-loop GETs at a constant rate over keep-alive connections, each latency measured from
 * the request's scheduled send time. The warm-up runs at the same rate and is not counted;
 * the CPU figure covers it too, so it is per sent request.
 */
export async function openLoop(target: LoadgenTarget, options: { rate: number; seconds: number; warmUpSeconds: number; connections: number }): Promise<LoadgenResult> {
  const result = await loadgen(target, ['-mode', 'rate', '-rate', String(options.rate), '-duration', `${options.seconds}s`, '-warmup', `${options.warmUpSeconds}s`, '-connections', String(options.connections)]);
  const requests = result.ok + result.non2xx;
  const sent = options.rate * (options.seconds + options.warmUpSeconds);
  return { ...result, cpuPerRequestUs: (result.cpuPerRequestUs * requests) / sent };
}

/** `n` GETs at the same instant, one connection each, timed from that instant. */
export function burst(target: LoadgenTarget, options: { n: number; preconnect: boolean }): Promise<LoadgenResult> {
  return loadgen(target, ['-mode', 'burst', '-n', String(options.n), ...(options.preconnect ? ['-preconnect'] : [])]);
}
