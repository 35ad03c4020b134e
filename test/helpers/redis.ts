import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before } from 'node:test';
import { Redis } from 'ioredis';
import { freePort } from './cli-process.js';

export interface RedisServer {
  url: string;
  port: number;
  /** SIGKILL: the way Redis dies under an OOM killer or a node loss. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty: no persistence). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The redis-server binary: CSG_REDIS_SERVER when set (a path; a path that does not exist shows
 * what a machine without Redis sees), else the first redis-server on PATH or in /usr/sbin.
 */
function findRedisServer(): string | undefined {
  const override = process.env.CSG_REDIS_SERVER;
  const candidates = override !== undefined ? [override] : [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'].filter(Boolean).map((dir) => join(dir, 'redis-server'));
  return candidates.find((path) => existsSync(path) && spawnSync(path, ['--version']).status === 0);
}

const BINARY = findRedisServer();

/** The redis-server this machine has, if any (see redisMissing). */
export const redisServerBinary = (): string | undefined => BINARY;

/**
 * `describe(name, { skip: redisMissing }, ...)`: a suite that needs a real redis-server skips
 * with this one line where there is none (npm test passes on a machine with only Node).
 */
export const redisMissing: string | false = BINARY
  ? false
  : process.env.CSG_REDIS_SERVER !== undefined
    ? `redis-server not usable at CSG_REDIS_SERVER=${process.env.CSG_REDIS_SERVER}: skipping the Redis suite`
    : 'redis-server not found on PATH (apt-get install redis-server, as .ci/run does): skipping the Redis suite';

/** A real redis-server on a free port, no persistence, for tests and the bench. */
export async function startRedis(): Promise<RedisServer> {
  if (!BINARY) throw new Error(redisMissing as string);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'csg-redis-'));
  let proc: ChildProcess | undefined;

  async function start(): Promise<void> {
    proc = spawn(BINARY as string, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      if (await accepts(port)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`redis-server did not start on port ${port}`);
  }
  async function end(signal: NodeJS.Signals): Promise<void> {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill(signal);
    });
  }

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: () => end('SIGKILL'),
    restart: start,
    async stop() {
      await end('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.end('PING\r\n');
      socket.once('data', (d) => resolve(d.toString().startsWith('+PONG')));
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * A private redis-server for the suite this is called in (its before and after hooks), and
 * fail-fast ioredis connections to it (or to `url`), closed when the suite ends.
 */
export function useRedisServer(): { connect(url?: string): Promise<Redis>; readonly url: string } {
  let server: RedisServer | undefined;
  const clients: Redis[] = [];
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await server?.stop();
  });
  return {
    /** redis://127.0.0.1:PORT of the suite's server, once its before hook has run. */
    get url() {
      return (server as RedisServer).url;
    },
    async connect(url = (server as RedisServer).url): Promise<Redis> {
      const redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 50 });
      redis.on('error', () => undefined);
      clients.push(redis);
      await new Promise((r) => redis.once('ready', r));
      return redis;
    },
  };
}
