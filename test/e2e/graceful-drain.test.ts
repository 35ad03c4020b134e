import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEmulator, generateEmulatorApp, type Emulator } from '../../src/emulator/index.js';

const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;
const API_KEY = 'drain-test-key-0123456789';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

async function status(url: string): Promise<number | 'refused'> {
  try {
    return (await fetch(url)).status;
  } catch {
    return 'refused';
  }
}

/** An SSE request whose chunks are collected as they arrive. */
function openStream(port: number, path: string, body: unknown): Promise<{ text: () => string; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'x-api-key': API_KEY, 'content-type': 'application/json' } }, (res) => {
      const ended = new Promise<void>((done) => {
        res.on('end', () => done());
        res.on('close', () => done());
      });
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.once('data', () => resolve({ text: () => text, ended }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('graceful drain on SIGTERM', () => {
  let emulator: Emulator;
  let child: ChildProcess;
  let port: number;
  let adminPort: number;
  let stderr = '';

  before(async () => {
    const generated = await generateEmulatorApp('9090');
    emulator = await createEmulator({ apps: [generated.app] });
    const dir = mkdtempSync(join(tmpdir(), 'csg-drain-'));
    writeFileSync(join(dir, 'key.pem'), generated.privateKeyPem);
    writeFileSync(join(dir, 'keys.yaml'), `- subject: drainer\n  sha256: ${createHash('sha256').update(API_KEY).digest('hex')}\n`);
    port = await freePort();
    adminPort = await freePort();
    child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve'], {
      env: {
        PATH: process.env.PATH ?? '',
        COZE_BASE_URL: emulator.url,
        COZE_AUDIENCE: 'api.coze.cn',
        COZE_APP_ID: '9090',
        COZE_KEY_ID: generated.kid,
        COZE_PRIVATE_KEY_FILE: join(dir, 'key.pem'),
        IDENTITY_API_KEYS_FILE: join(dir, 'keys.yaml'),
        PORT: String(port),
        HOST: '127.0.0.1',
        ADMIN_PORT: String(adminPort),
        ADMIN_HOST: '127.0.0.1',
        SHUTDOWN_GRACE_SECONDS: '2',
        LOG_LEVEL: 'warn',
      },
    });
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    for (let i = 0; i < 200 && (await status(`http://127.0.0.1:${adminPort}/readyz`)) !== 200; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await status(`http://127.0.0.1:${adminPort}/readyz`), 200, `the gateway started: ${stderr}`);
  });
  after(async () => {
    child.kill('SIGKILL');
    await emulator.close();
  });

  it('finishes streams inside the window, ends the others with an error event, refuses new connections and exits 0', async () => {
    const pacer = emulator.pace();
    const chat = { bot_id: 'b', user_id: 'x', stream: true, additional_messages: [{ role: 'user', content: 'drain me', content_type: 'text' }] };
    // The long stream: one event, then Coze goes quiet past the drain window.
    emulator.setApiFault({ kind: 'stall-mid-stream', afterEvents: 1, times: 1 });
    const released = pacer.release.bind(pacer);
    const longStream = openStream(port, '/v3/chat', chat);
    released(1);
    const long = await longStream;
    // The short stream: paced, so it is in flight when SIGTERM arrives.
    const shortStream = openStream(port, '/v3/chat', chat);
    released(1);
    const short = await shortStream;

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    for (let i = 0; i < 100 && (await status(`http://127.0.0.1:${adminPort}/readyz`)) !== 503; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await status(`http://127.0.0.1:${adminPort}/readyz`), 503, 'readiness flips at once');
    assert.equal(await status(`http://127.0.0.1:${port}/v1/bots/b`), 'refused', 'new connections are refused');

    released(100);
    await short.ended;
    assert.ok(short.text().endsWith('event:done\ndata:"[DONE]"\n\n'), `the in-window stream completed intact: ${short.text()}`);
    assert.equal(await status(`http://127.0.0.1:${adminPort}/readyz`), 503, 'still 503 while draining');

    await long.ended;
    assert.match(long.text(), /^event:conversation\.chat\.created\n/);
    assert.ok(long.text().endsWith('event:error\ndata:{"code":503001,"msg":"The gateway is shutting down. Retry on another replica."}\n\n'), long.text());
    assert.equal(await exited, 0, stderr);
  });
});
