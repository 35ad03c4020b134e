import assert from 'node:assert/strict';
import { createPublicKey, KeyObject } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startStack, type Stack } from '../helpers/stack.js';
import { openWebSocket } from '../helpers/websocket.js';

describe('WebSocket: a client that leaves while its upgrade is admitted', () => {
  // A key set that takes 400 ms to fetch: admission waits for it on the first upgrade.
  let keySet = '{"keys":[]}';
  const slowJwks = http.createServer((_req, res) => {
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(keySet), 400);
  });
  let stack: Stack;
  before(async () => {
    await new Promise<void>((resolve) => slowJwks.listen(0, '127.0.0.1', resolve));
    const jwksUrl = `http://127.0.0.1:${(slowJwks.address() as net.AddressInfo).port}/jwks`;
    stack = await startStack({ env: { IDENTITY_JWT_JWKS_URL: jwksUrl, RATE_LIMIT_MAX_CONCURRENT: '1', ALLOWED_BOT_IDS: 'bot-ok' } });
    keySet = JSON.stringify({ keys: [{ ...createPublicKey(KeyObject.from(stack.callerKey)).export({ format: 'jwk' }), alg: 'RS256', use: 'sig' }] });
  });
  after(async () => {
    await stack?.close();
    slowJwks.close();
  });

  it('ws-admission-client-gone: the identity keeps its concurrency slot, and nothing is minted or dialled for the client gone', async () => {
    const jwt = await stack.callerToken('alice');
    const { port } = new URL(stack.url);
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      socket.write(
        `GET /v1/chat?bot_id=bot-ok HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${jwt}\r\n\r\n`,
      );
      // Reset while the key set is still being fetched.
      setTimeout(() => socket.resetAndDestroy(), 100);
    });
    socket.on('error', () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(stack.emulator.websockets.length, 0, 'no Coze WebSocket for a client gone');
    assert.equal(stack.emulator.stats.exchanges, 0, 'no token minted for it');
    // The cap is one socket per identity: the slot of the client gone is free again.
    const ws = await openWebSocket(`${stack.url.replace('http', 'ws')}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${await stack.callerToken('alice')}` });
    ws.terminate();
  });
});
