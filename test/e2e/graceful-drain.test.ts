import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import type { Emulator } from '../../src/emulator/index.js';
import { spawnServe, startCliFixture, type CliFixture, type ServeProcess } from '../helpers/cli-process.js';
import { until } from '../helpers/websocket.js';

const API_KEY = 'drain-test-key-0123456789';

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

/**
 * A WebSocket client that never answers a close frame (nor anything else): it upgrades by hand
 * over a raw socket, then only reads. The close frames it receives are decoded.
 */
function openDeafWebSocket(port: number, path: string): Promise<{ closeCodes: number[]; gone: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    const closeCodes: number[] = [];
    const gone = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buffer.subarray(0, end).toString();
        if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`upgrade refused: ${head}`));
        upgraded = true;
        buffer = buffer.subarray(end + 4);
        resolve({ closeCodes, gone });
      }
      // Server frames are unmasked. Coze's events (chat.created, ...) come first, then the close frame.
      while (buffer.length >= 2) {
        const short = (buffer[1] as number) & 0x7f;
        const headerLength = short === 126 ? 4 : short === 127 ? 10 : 2;
        if (buffer.length < headerLength) break;
        const length = short === 126 ? buffer.readUInt16BE(2) : short === 127 ? Number(buffer.readBigUInt64BE(2)) : short;
        if (buffer.length < headerLength + length) break;
        if (((buffer[0] as number) & 0x0f) === 0x8 && length >= 2) closeCodes.push(buffer.readUInt16BE(headerLength));
        buffer = buffer.subarray(headerLength + length);
      }
    });
    socket.write(
      [`GET ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${Buffer.from('deaf-client-0123').toString('base64')}`, `X-Api-Key: ${API_KEY}`, '', ''].join('\r\n'),
    );
  });
}

describe('graceful drain on SIGTERM', () => {
  let fixture: CliFixture;
  let emulator: Emulator;
  let env: Record<string, string>;
  const processes: ServeProcess[] = [];

  before(async () => {
    fixture = await startCliFixture('9090', { [API_KEY]: 'drainer' });
    ({ emulator, env } = fixture);
  });
  after(async () => {
    for (const p of processes) p.kill();
    await fixture.close();
  });

  async function serve(extra: Record<string, string>): Promise<ServeProcess> {
    const gateway = await spawnServe({ ...env, ...extra });
    processes.push(gateway);
    await gateway.ready();
    return gateway;
  }

  it('finishes streams inside the window, ends the others with an error event, refuses new connections and exits 0', async () => {
    const gateway = await serve({ SHUTDOWN_GRACE_SECONDS: '2', LOG_LEVEL: 'warn' });
    const { port, adminPort } = gateway;
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

    gateway.child.kill('SIGTERM');
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
    assert.equal((await gateway.exited).code, 0, gateway.output());
    emulator.unpace();
  });

  it('drain-ends-with-websockets-open: WebSockets get 1001 in the last phase, a client that never answers is cut, and the process exits 0 within the window', async () => {
    emulator.reset();
    const gateway = await serve({ SHUTDOWN_GRACE_SECONDS: '3', LOG_LEVEL: 'info' });
    const path = '/v1/chat?bot_id=b';
    const polite = new WebSocket(`ws://127.0.0.1:${gateway.port}${path}`, { headers: { 'x-api-key': API_KEY } });
    const politeClose = new Promise<number>((resolve) => polite.once('close', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      polite.once('open', () => resolve());
      polite.once('error', reject);
    });
    const deaf = await openDeafWebSocket(gateway.port, path);
    await until(() => emulator.openWebSockets === 2, 'both sockets are relayed to Coze');

    const signalled = Date.now();
    gateway.child.kill('SIGTERM');
    // Until the last phase the sockets stay open: WebSockets are in-flight work.
    await gateway.waitForLog((l) => l.msg === 'draining', 'draining');
    assert.equal(polite.readyState, WebSocket.OPEN, 'not closed at the start of the drain');

    assert.equal(await politeClose, 1001, 'the client that answers gets 1001 and closes');
    await deaf.gone;
    assert.deepEqual(deaf.closeCodes, [1001], 'the deaf client got the 1001 close frame before it was cut');
    const exit = await gateway.exited;
    assert.equal(exit.code, 0, gateway.output());
    // Far above the 3 s window, far below ws's own 30 s close timeout: what this bound tells apart
    // is "the drain cut the socket" from "something else eventually did".
    assert.ok(Date.now() - signalled < 20_000, 'exited by the end of the window, not by some later timeout');

    const stopped = gateway.logs.find((l) => l.msg === 'stopped');
    assert.deepEqual(
      { outcome: stopped?.outcome, websocketsClosed: stopped?.websocketsClosed, socketsCut: stopped?.socketsCut },
      { outcome: 'deadline', websocketsClosed: 2, socketsCut: 1 },
      gateway.output(),
    );
    await until(() => emulator.openWebSockets === 0, 'Coze saw both sockets close');
    assert.deepEqual(
      emulator.websockets.map((w) => w.closeCode),
      [1001, 1001],
      'Coze was told 1001 (going away) for both',
    );
  });

  it('second-signal-ends-at-once: a second SIGTERM during the drain ends the process without waiting for the window', async () => {
    emulator.reset();
    const gateway = await serve({ SHUTDOWN_GRACE_SECONDS: '60', LOG_LEVEL: 'info' });
    emulator.setApiFault({ kind: 'stall-mid-stream', afterEvents: 1, times: 1 });
    const stalled = await openStream(gateway.port, '/v3/chat', { bot_id: 'b', user_id: 'x', stream: true, additional_messages: [{ role: 'user', content: 'hang', content_type: 'text' }] });

    gateway.child.kill('SIGTERM');
    await gateway.waitForLog((l) => l.msg === 'draining', 'draining');
    const signalled = Date.now();
    gateway.child.kill('SIGTERM');
    const exit = await gateway.exited;
    assert.deepEqual(exit, { code: 143, signal: null }, `128 + SIGTERM, exited by the gateway itself (as PID 1 a default action would be ignored): ${gateway.output()}`);
    // The window is 60 s: anything near it would mean the second signal was ignored.
    assert.ok(Date.now() - signalled < 20_000, 'ended long before the window');
    await stalled.ended;
  });
});
