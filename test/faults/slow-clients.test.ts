import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startStack, type Stack } from '../helpers/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('slow clients', () => {
  let stack: Stack;
  let bearer: string;
  before(async () => {
    stack = await startStack({ flags: { 'server.headersTimeoutSeconds': '1', 'server.keepAliveTimeoutSeconds': '1' } });
    bearer = `Bearer ${await stack.callerToken('alice')}`;
  });
  after(() => stack.close());

  const connect = async () => {
    const socket = net.connect(Number(new URL(stack.url).port), '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    return socket;
  };

  it('slowloris: headers that trickle in are cut at server.headersTimeoutSeconds with a 408 envelope', async () => {
    const socket = await connect();
    const received: Buffer[] = [];
    socket.on('data', (c: Buffer) => received.push(c));
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now())));
    socket.on('error', () => undefined);
    const started = Date.now();
    socket.write('GET /v1/bots/b HTTP/1.1\r\nHost: x\r\n');
    // One byte every 100 ms: always active, never finished.
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write('X');
    }, 100);
    const closedAt = await Promise.race([closed, sleep(6000).then(() => -1)]);
    clearInterval(trickle);
    socket.destroy();
    assert.ok(closedAt > 0, 'the gateway closed the connection');
    assert.ok(closedAt - started < 3500, `closed after ${closedAt - started} ms`);
    const text = Buffer.concat(received).toString();
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.match(text, /x-gateway-error: request-timeout/);
    assert.equal(stack.emulator.requests.length + stack.emulator.tokenRequests, 0);
  });

  it('a reader that stops reading holds back Coze: the gateway does not buffer without bound', async () => {
    stack.emulator.setApiFault({ kind: 'flood', times: 1 });
    const socket = await connect();
    socket.on('error', () => undefined);
    const body = JSON.stringify({ bot_id: 'b', stream: true, additional_messages: [] });
    socket.write(`POST /v3/chat HTTP/1.1\r\nHost: x\r\nAuthorization: ${bearer}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await new Promise((r) => socket.once('data', r));
    socket.pause();
    // The buffers between Coze and the reader fill at whatever pace the machine allows; once they
    // are full Coze must be held back. Without backpressure the count never settles.
    let early = stack.emulator.floodBytesWritten;
    let late = early;
    for (let waited = 0; waited < 20_000; waited += 500) {
      await sleep(500);
      late = stack.emulator.floodBytesWritten;
      if (late - early < 64 * 1024) break;
      early = late;
    }
    assert.ok(late - early < 64 * 1024, `Coze kept writing while nobody read: +${late - early} bytes in the last 0.5 s, ${late} in all`);
    await sleep(1000);
    const after1s = stack.emulator.floodBytesWritten;
    assert.ok(after1s - late < 512 * 1024, `Coze kept writing while nobody read: +${after1s - late} bytes in 1 s`);
    assert.ok(after1s < 32 * 1024 * 1024, `${after1s} bytes in flight for one stalled reader`);
    const heapMiB = process.memoryUsage().heapUsed / 2 ** 20;
    assert.ok(heapMiB < 512, `heap ${heapMiB.toFixed(0)} MiB`);

    socket.destroy();
    for (let i = 0; i < 50 && stack.emulator.openStreams > 0; i++) await sleep(20);
    assert.equal(stack.emulator.openStreams, 0, 'the upstream stream closed with the client');
  });
});
