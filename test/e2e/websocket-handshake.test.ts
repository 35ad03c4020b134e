import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertEnvelope, rawExchange } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** An upgrade request as a client would write it; a header given as '' is left out. */
function handshake(lines: Record<string, string>, method = 'GET'): string {
  const head = Object.entries({ host: 'gateway.test', connection: 'Upgrade', ...lines })
    .filter(([, value]) => value !== '')
    .map(([name, value]) => `${name}: ${value}`);
  return `${method} /v1/chat?bot_id=bot-ok HTTP/1.1\r\n${head.join('\r\n')}\r\n\r\n`;
}

describe('WebSocket handshakes the gateway refuses', () => {
  let stack: Stack;
  let jwt: string;

  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok' } });
    jwt = await stack.callerToken('alice');
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  it('malformed-handshake-opens-no-coze-websocket: an authenticated but malformed handshake is 400 in the Coze envelope and Coze is never dialled', async () => {
    const valid = { upgrade: 'websocket', 'sec-websocket-key': KEY, 'sec-websocket-version': '13', authorization: `Bearer ${jwt}` };
    const cases: Array<{ what: string; request: string; msg: RegExp }> = [
      { what: 'Upgrade: h2c', request: handshake({ ...valid, upgrade: 'h2c' }), msg: /Upgrade: websocket/ },
      { what: 'no Sec-WebSocket-Key', request: handshake({ ...valid, 'sec-websocket-key': '' }), msg: /Sec-WebSocket-Key/ },
      { what: 'a short Sec-WebSocket-Key', request: handshake({ ...valid, 'sec-websocket-key': 'c2hvcnQ=' }), msg: /Sec-WebSocket-Key/ },
      { what: 'Sec-WebSocket-Version: 12', request: handshake({ ...valid, 'sec-websocket-version': '12' }), msg: /Sec-WebSocket-Version/ },
      { what: 'a repeated subprotocol', request: handshake({ ...valid, 'sec-websocket-protocol': 'chat, chat' }), msg: /Sec-WebSocket-Protocol/ },
      { what: 'a subprotocol list with an empty element', request: handshake({ ...valid, 'sec-websocket-protocol': 'chat,,x' }), msg: /Sec-WebSocket-Protocol/ },
      { what: 'a POST', request: handshake(valid, 'POST'), msg: /GET/ },
    ];
    for (const { what, request, msg } of cases) {
      const res = await rawExchange(stack.url, request);
      assertEnvelope(res, 400, 'bad-request');
      assert.match(res.json().msg, msg, what);
      assert.ok(res.closed, `${what}: the gateway closes the connection after its answer`);
    }
    assert.equal(stack.emulator.websockets.length, 0, 'no Coze WebSocket was opened for a handshake that cannot complete');
    assert.equal(stack.emulator.openWebSockets, 0);
    assert.equal(stack.gateway.websockets.size, 0);
  });

  it('an unsupported Sec-WebSocket-Version answer names the versions the gateway speaks (RFC 6455 section 4.4)', async () => {
    const res = await rawExchange(stack.url, handshake({ upgrade: 'websocket', 'sec-websocket-key': KEY, 'sec-websocket-version': '7', authorization: `Bearer ${jwt}` }));
    assertEnvelope(res, 400, 'bad-request');
    assert.equal(res.headers['sec-websocket-version'], '13, 8');
  });

  it('a well-formed handshake with a subprotocol list still opens (the check refuses only what ws would)', async () => {
    const res = await rawExchange(stack.url, handshake({ upgrade: 'WebSocket', 'sec-websocket-key': KEY, 'sec-websocket-version': '13', 'sec-websocket-protocol': 'chat ,  v2', authorization: `Bearer ${jwt}` }), 1000);
    assert.equal(res.status, 101, res.raw);
    // rawExchange cut the client's socket; the relay closes Coze's side in turn.
    assert.equal(stack.emulator.websockets.length, 1);
  });

  it('refused-upgrade-closed-by-gateway: 20 refused upgrades whose clients never close are closed by the gateway, and the proxy is idle', { timeout: 60_000 }, async () => {
    const serverSockets: net.Socket[] = [];
    const onConnection = (socket: net.Socket) => serverSockets.push(socket);
    stack.server.on('connection', onConnection);
    const port = Number(new URL(stack.url).port);
    const clients = await Promise.all(
      Array.from({ length: 20 }, () => {
        // allowHalfOpen: the client never closes its side, whatever the gateway does.
        const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
        client.on('error', () => undefined);
        let answer = '';
        client.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
        client.write(handshake({ upgrade: 'websocket', 'sec-websocket-key': KEY, 'sec-websocket-version': '13' }));
        return new Promise<{ client: net.Socket; answer: string }>((resolve) => client.once('end', () => resolve({ client, answer })));
      }),
    );
    stack.server.off('connection', onConnection);
    try {
      for (const { answer } of clients) {
        assert.match(answer, /^HTTP\/1\.1 401 /);
        assert.match(answer, /x-gateway-error: credential-missing/);
      }
      assert.equal(serverSockets.length, 20);
      // Without the fix these stay half-open for good, and this never resolves (the test times out).
      await Promise.all(serverSockets.map((socket) => (socket.destroyed ? undefined : new Promise((resolve) => socket.once('close', resolve)))));
      await stack.gateway.websockets.idle();
    } finally {
      for (const { client } of clients) client.destroy();
    }
  });
});
