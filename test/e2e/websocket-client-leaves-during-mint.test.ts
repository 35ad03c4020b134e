import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { startStack, type Stack } from '../helpers/stack.js';
import { openWebSocket, until } from '../helpers/websocket.js';

const TOKEN_PATH = '/api/permission/oauth2/token';

interface HeldTokenEndpoint {
  url: string;
  /** Where requests go on to: the emulator, once the stack is up. */
  target: string;
  /** The token requests waiting; each call lets one through. */
  held: Array<() => void>;
  close(): void;
}

/** Coze's HTTP API in front of the emulator, whose token requests wait until the test lets them through. */
async function startHeldTokenEndpoint(): Promise<HeldTokenEndpoint> {
  const server = http.createServer((req, res) => {
    const forward = () => {
      const upstream = http.request(`${endpoint.target}${req.url ?? '/'}`, { method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    if (req.url === TOKEN_PATH) endpoint.held.push(forward);
    else forward();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const endpoint: HeldTokenEndpoint = {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    target: '',
    held: [],
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
  return endpoint;
}

/** Sends a WebSocket handshake on a raw socket, so the test decides how the client leaves. */
function rawUpgrade(stack: Stack, jwt: string): net.Socket {
  const socket = net.connect(Number(new URL(stack.url).port), '127.0.0.1', () => {
    socket.write(
      `GET /v1/chat?bot_id=bot-ok HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${jwt}\r\n\r\n`,
    );
  });
  socket.on('error', () => undefined);
  return socket;
}

describe('WebSocket: a client that leaves while the token of its upgrade is minted', () => {
  let stack: Stack | undefined;
  let tokenEndpoint: HeldTokenEndpoint | undefined;
  afterEach(async () => {
    await stack?.close();
    tokenEndpoint?.close();
    stack = tokenEndpoint = undefined;
  });

  for (const [how, leave] of [
    ['resets its connection', (socket: net.Socket) => socket.resetAndDestroy()],
    ['half-closes its connection (FIN)', (socket: net.Socket) => void socket.end()],
  ] as const) {
    it(`ws-mint-client-gone: a client that ${how} during the mint gets no Coze WebSocket, and nothing stays held`, async () => {
      const held = (tokenEndpoint = await startHeldTokenEndpoint());
      // The WebSockets go straight to the emulator; only its token endpoint is reached through the hold.
      const s = (stack = await startStack({ env: { COZE_BASE_URL: held.url, RATE_LIMIT_MAX_CONCURRENT: '1', ALLOWED_BOT_IDS: 'bot-ok' } }));
      held.target = s.emulator.url;
      const socket = rawUpgrade(s, await s.callerToken('alice'));
      await until(() => held.held.length === 1, 'the gateway is minting the token of the upgrade');
      leave(socket);
      // A half-closed client is let go by the gateway (its write side stays open until then).
      await until(() => socket.closed, 'the gateway closed the connection of the client gone');
      held.held.shift()?.();
      await until(() => s.emulator.stats.exchanges === 1, 'the mint completed');
      // The gateway logs the upgrade it gave up (499); the old code dialled Coze instead.
      await until(() => s.emulator.websockets.length > 0 || s.logs.some((line) => line.includes('"upgrade":true') && line.includes('"status":499')), 'the gateway gave the upgrade up');
      assert.equal(s.emulator.websockets.length, 0, 'no Coze WebSocket for a client gone');
      // Its line has the fields of an HTTP request's (ws-abort-line-has-request-fields), and it is counted.
      const gone = s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.upgrade === true);
      assert.equal(gone.length, 1, 'one line');
      assert.deepEqual({ ...gone[0], level: undefined, time: undefined, service: undefined, requestId: undefined, durationMs: undefined, session: undefined }, { level: undefined, time: undefined, service: undefined, requestId: undefined, method: 'GET', route: 'ws.chat', path: '/v1/chat', status: 499, durationMs: undefined, source: 'jwt', session: undefined, bytesIn: 0, bytesOut: 0, upgrade: true });
      assert.equal(typeof gone[0]?.durationMs, 'number');
      assert.match(await s.gateway.metrics.registry.metrics(), /^coze_gateway_http_requests_total\{route="ws.chat",method="GET",status="499"\} 1$/m);
      assert.equal(s.gateway.websockets.size, 0, 'nothing relayed');
      assert.match(await s.gateway.metrics.registry.metrics(), /^coze_gateway_active_websockets 0$/m);
      // The 499 is logged as the client leaves; the count is taken back once the mint has ended
      // the upgrade, a moment after Coze answered it.
      await until(() => s.gateway.usage.counter.view('alice').day.requests === 0, 'an upgrade never relayed is not counted against the budgets');
      // The cap is one socket per session: the slot of the client gone is free again.
      const ws = await openWebSocket(`${s.url.replace('http', 'ws')}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${await s.callerToken('alice')}` });
      ws.terminate();
      assert.equal(s.emulator.websockets.length, 1, 'the next upgrade is relayed with the token minted meanwhile');
    });
  }
});
