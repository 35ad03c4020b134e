import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEmulator, generateEmulatorApp, type Emulator } from '../../src/emulator/index.js';

/** The CLI entry point, run through tsx: the same code `node dist/main.js` runs after a build. */
export const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;
/** tsx's loader by absolute URL, so that a child process may run from any folder. */
export const TSX = import.meta.resolve('tsx');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Only what the test gives: the developer's own environment must not leak in. */
function childEnv(env: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env };
}

/** Runs one CLI command to its end. */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], { env: childEnv(env) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface ServeProcess {
  child: ChildProcessWithoutNullStreams;
  port: number;
  adminPort: number;
  /** Every JSON log line written to stdout so far, parsed. */
  logs: Array<Record<string, unknown>>;
  output(): string;
  /** The first log line that matches; fails after `timeoutMs` (generous: the machine may be busy). */
  waitForLog(match: (line: Record<string, unknown>) => boolean, what: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Polls /readyz until it answers 200. */
  ready(): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): void;
}

/** `serve` as a real process on free loopback ports, configured by environment variables only. */
export async function spawnServe(env: Record<string, string>, args: string[] = ['serve']): Promise<ServeProcess> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], {
    env: childEnv({ HOST: '127.0.0.1', ADMIN_HOST: '127.0.0.1', PORT: String(port), ADMIN_PORT: String(adminPort), ...env }),
  });
  let stdout = '';
  let stderr = '';
  const logs: Array<Record<string, unknown>> = [];
  let listeners: Array<() => void> = [];
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
    const lines = stdout.split('\n');
    stdout = lines.pop() as string;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ text: line });
      }
    }
    for (const l of listeners) l();
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const output = () => `${logs.map((l) => JSON.stringify(l)).join('\n')}\n${stdout}\nstderr: ${stderr}`;
  return {
    child,
    port,
    adminPort,
    logs,
    output,
    waitForLog(match, what, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find(match);
          if (!found) return false;
          clearTimeout(timer);
          listeners = listeners.filter((l) => l !== onData);
          resolve(found);
          return true;
        };
        const onData = () => void check();
        const timer = setTimeout(() => {
          listeners = listeners.filter((l) => l !== onData);
          reject(new Error(`no log line ${what} within ${timeoutMs} ms:\n${output()}`));
        }, timeoutMs);
        if (!check()) listeners.push(onData);
      });
    },
    async ready() {
      let status = 0;
      for (let i = 0; i < 600 && status !== 200; i++) {
        status = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status, () => 0);
        if (status !== 200) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(status, 200, `the gateway became ready:\n${output()}`);
    },
    exited,
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

export interface CliFixture {
  emulator: Emulator;
  /** The fixture's own temporary folder (the key and the API key file live here). */
  dir: string;
  privateKeyPem: string;
  /** What a CLI process needs to use the emulator: the COZE_* settings and the API key file. */
  env: Record<string, string>;
  close(): Promise<void>;
}

/** An emulator with one app, and the app's key and an API key file in a temporary folder. */
export async function startCliFixture(appId: string, apiKeys: Record<string, string> = {}): Promise<CliFixture> {
  const generated = await generateEmulatorApp(appId);
  const emulator = await createEmulator({ apps: [generated.app], audience: 'api.coze.cn' });
  const dir = mkdtempSync(join(tmpdir(), 'csg-cli-'));
  writeFileSync(join(dir, 'key.pem'), generated.privateKeyPem);
  const entries = Object.entries(apiKeys).map(([key, subject]) => `- subject: ${subject}\n  sha256: ${createHash('sha256').update(key).digest('hex')}\n`);
  writeFileSync(join(dir, 'keys.yaml'), entries.length ? entries.join('') : '[]\n');
  return {
    emulator,
    dir,
    privateKeyPem: generated.privateKeyPem,
    env: {
      COZE_BASE_URL: emulator.url,
      COZE_WS_BASE_URL: emulator.wsUrl,
      COZE_AUDIENCE: 'api.coze.cn',
      COZE_APP_ID: appId,
      COZE_KEY_ID: generated.kid,
      COZE_PRIVATE_KEY_FILE: join(dir, 'key.pem'),
      IDENTITY_API_KEYS_FILE: join(dir, 'keys.yaml'),
    },
    async close() {
      await emulator.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
