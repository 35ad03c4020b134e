import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocketServer, type WebSocket } from 'ws';
import { startStack, type Stack } from '../helpers/stack.js';
import { closed, openWebSocket, until } from '../helpers/websocket.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * A Coze connection that dies without a FIN (a network partition, a NAT that forgot the flow)
 * sends nothing more, not even a pong, and TCP never notices. Coze here is a plain ws server
 * that never answers a ping; the gateway pings every 100 ms.
 */
describe('WebSocket: a Coze side gone silent', () => {
  let silentCoze: WebSocketServer;
  let stack: Stack;
  before(async () => {
    // Made here, not when the file loads: 'listening' must not fire before anyone waits for it
    // (async-steps.test.ts loads every file first and runs this suite much later).
    silentCoze = new WebSocketServer({ port: 0, host: '127.0.0.1', autoPong: false });
    await once(silentCoze, 'listening');
    const { port } = silentCoze.address() as AddressInfo;
    stack = await startStack({ env: { COZE_WS_BASE_URL: `ws://127.0.0.1:${port}`, RATE_LIMIT_MAX_CONCURRENT: '1' }, gatewayDeps: { websocketHeartbeatMs: 100 } });
  });
  after(async () => {
    await stack?.close();
    for (const socket of silentCoze?.clients ?? []) socket.terminate();
    silentCoze?.close();
  });

  it('ws-silent-coze-detected: the client gets 1011 within a bounded time, the Coze socket is cut and the concurrency slot is free again', async () => {
    const url = `${stack.url.replace('http', 'ws')}/v1/chat?bot_id=b`;
    const headers = { authorization: `Bearer ${await stack.callerToken('alice')}` };
    const ws = await openWebSocket(url, headers);
    assert.equal(silentCoze.clients.size, 1, 'the relay reached the silent Coze');
    // Generous: two missed pings take 200 ms on an idle machine.
    const outcome = await Promise.race([closed(ws), sleep(10_000).then(() => 'still open after 10 s')]);
    ws.terminate();
    assert.equal(outcome, 1011, 'the client learns that Coze is gone, as for a drop');
    await until(() => silentCoze.clients.size === 0, 'the gateway cut its socket to the silent Coze');

    // One socket per identity: a second one is accepted once the first has given its slot back.
    let again: WebSocket | undefined;
    for (let i = 0; i < 50 && !again; i++) again = await openWebSocket(url, headers).catch(() => sleep(100).then(() => undefined));
    assert.ok(again, 'the slot of the dead pair was released');
    again.terminate();
  });
});
