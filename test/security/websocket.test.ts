import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Socket } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertEnvelope, rawExchange, request, startDecoy } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';
import { closed, nextEvent, openWebSocket, refusedUpgrade, until } from '../helpers/websocket.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The hostile cases of the HTTP suites, redone over WebSockets (issue 8): credentials in the
 * query, forged chat.update events, oversized frames, path and Host tricks on the upgrade, and a
 * reader that stops reading. The emulator records every socket, so "nothing reached Coze" and
 * "Coze only saw Alice" are checked on its side.
 */
describe('WebSocket hostile input', () => {
  let stack: Stack;
  let wsUrl: string;
  let jwt: string;
  let bobJwt: string;
  /** Every client-facing socket the gateway accepted, to read how much it queued for each. */
  const serverSockets = new Set<Socket>();

  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', IDENTITY_TRUSTED_HEADER_ALLOW_FROM: '10.0.0.0/8', SESSION_SHARED_NAMESPACE: 'true' } });
    wsUrl = stack.url.replace('http', 'ws');
    jwt = await stack.callerToken('alice');
    bobJwt = await stack.callerToken('bob');
    stack.server.on('connection', (socket) => {
      serverSockets.add(socket);
      socket.once('close', () => serverSockets.delete(socket));
    });
  });
  after(async () => {
    assert.ok(
      stack.emulator.websockets.every((w) => w.sessionName === 'alice'),
      'every socket Alice opened reached Coze as Alice',
    );
    await stack.close();
  });
  beforeEach(() => stack.emulator.reset());

  const bearer = (token: string) => `Bearer ${token}`;

  describe('credentials in the query', () => {
    it('ws-query-and-header-credential: a query credential that differs from the Authorization header is 400 duplicate-header', async () => {
      for (const query of [bearer(bobJwt), `bearer ${jwt}`, `Bearer ${jwt} `, jwt]) {
        const res = await refusedUpgrade(`${wsUrl}/v1/chat?bot_id=bot-ok&authorization=${encodeURIComponent(query)}`, { authorization: bearer(jwt) });
        assert.equal(res.status, 400, query);
        assert.equal(res.gatewayError, 'duplicate-header');
        assert.equal(JSON.parse(res.body).code, 400006);
        assert.match(JSON.parse(res.body).msg, /was sent more than once.*differ/);
      }
      assertNothingReachedCoze(stack);
    });

    it('ws-same-credential-header-and-query: the same credential in the header and the query (coze-js in Node) is one credential', async () => {
      // `%20` as ws and browsers encode the space, `+` as a form encoder would: both decode to the header's bytes.
      for (const encoded of [encodeURIComponent(bearer(jwt)), `Bearer+${jwt}`]) {
        stack.emulator.reset();
        const ws = await openWebSocket(`${wsUrl}/v1/chat?bot_id=bot-ok&authorization=${encoded}`, { authorization: bearer(jwt) });
        const upstream = stack.emulator.websockets[0];
        assert.equal(upstream?.sessionName, 'alice', encoded);
        assert.match(upstream?.query.authorization ?? '', /^Bearer czs_/, 'the query credential was replaced, never forwarded');
        assert.ok(!JSON.stringify(upstream).includes(jwt));
        ws.close();
        await closed(ws);
      }
    });

    it('a repeated authorization query parameter, in any letter case, is 400 duplicate-header', async () => {
      for (const query of [`authorization=${encodeURIComponent(bearer(jwt))}&authorization=${encodeURIComponent(bearer(bobJwt))}`, `authorization=${encodeURIComponent(bearer(jwt))}&Authorization=${encodeURIComponent(bearer(bobJwt))}`]) {
        const res = await refusedUpgrade(`${wsUrl}/v1/chat?bot_id=bot-ok&${query}`);
        assert.equal(res.status, 400, query);
        assert.equal(res.gatewayError, 'duplicate-header');
      }
      assertNothingReachedCoze(stack);
    });

    it('an Authorization query parameter in another letter case is taken and never forwarded', async () => {
      const ws = await openWebSocket(`${wsUrl}/v1/chat?bot_id=bot-ok&AUTHORIZATION=${encodeURIComponent(bearer(jwt))}`);
      const upstream = stack.emulator.websockets[0];
      assert.equal(upstream?.sessionName, 'alice');
      assert.deepEqual(Object.keys(upstream?.query ?? {}).sort(), ['authorization', 'bot_id']);
      assert.match(upstream?.query.authorization ?? '', /^Bearer czs_/);
      ws.close();
      await closed(ws);
    });

    it('http-query-credential-not-forwarded: on plain HTTP, an authorization query parameter never reaches Coze', async () => {
      const res = await request(stack.url, { path: `/v1/bots/bot-ok?authorization=${encodeURIComponent(bearer(jwt))}&x=1`, headers: { authorization: bearer(jwt) } });
      assert.equal(res.status, 200);
      const seen = stack.emulator.requests.at(-1);
      assert.deepEqual(seen?.query, { x: '1' });
      assert.equal(seen?.sessionName, 'alice');
    });

    it('Cookie, X-Api-Key, Proxy-Authorization and the trusted header never reach the upstream handshake', async () => {
      const ws = await openWebSocket(`${wsUrl}/v1/audio/speech`, {
        authorization: bearer(jwt),
        cookie: 'sid=secret-cookie',
        'x-api-key': 'sk-not-for-coze',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
      });
      const headers = stack.emulator.websockets[0]?.headers ?? {};
      assert.equal(headers.cookie, undefined);
      assert.equal(headers['x-api-key'], undefined);
      assert.equal(headers['proxy-authorization'], undefined);
      assert.equal(headers['x-forwarded-user'], undefined);
      assert.match(String(headers.authorization), /^Bearer czs_/);
      ws.close();
      await closed(ws);
    });

    it('the trusted header on an upgrade from outside allowFrom is 401', async () => {
      const res = await refusedUpgrade(`${wsUrl}/v1/chat?bot_id=bot-ok`, { 'x-forwarded-user': 'bob', 'x-forwarded-for': '10.1.2.3' });
      assert.equal(res.status, 401);
      assert.equal(res.gatewayError, 'untrusted-identity-header');
      assertNothingReachedCoze(stack);
    });
  });

  describe('forged events', () => {
    const forged = (userId: string) => ({ id: 'e1', event_type: 'chat.update', data: { chat_config: { user_id: userId } } });
    const lastUpdate = () => stack.emulator.websockets[0]?.chatUpdates.at(-1) as { data: { chat_config: unknown } } | undefined;

    it('binary-chat-update-forced: chat.update sent as a binary frame has its user id forced too', async () => {
      const ws = await openWebSocket(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: bearer(jwt) });
      ws.send(Buffer.from(`  \n${JSON.stringify(forged('bob'))}`), { binary: true });
      const { event } = await nextEvent(ws, 'chat.updated');
      const seen = stack.emulator.websockets[0]?.frames[0];
      assert.equal(seen?.isBinary, true, 'the frame type is kept');
      assert.deepEqual(JSON.parse(seen?.data.toString() ?? '').data.chat_config, { user_id: 'alice' });
      assert.equal((event.data as { chat_config: { user_id: string } }).chat_config.user_id, 'alice');
      ws.close();
      await closed(ws);
    });

    it('a non-object chat_config, extra nesting and an escaped key all end as the caller', async () => {
      const ws = await openWebSocket(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: bearer(jwt) });
      // [sent, what Coze must receive]
      const frames: Array<[string, string]> = [
        ['{"event_type":"chat.update","data":{"chat_config":"user_id=bob"}}', '{"event_type":"chat.update","data":{"chat_config":{"user_id":"alice"}}}'],
        [
          '{"event_type":"chat.update","data":{"chat_config":{"user_id":["bob"],"extra":{"user_id":"bob"}}}}',
          '{"event_type":"chat.update","data":{"chat_config":{"user_id":"alice","extra":{"user_id":"bob"}}}}',
        ],
        ['{"event_type":"chat.update","data":{"chat_config":{"user\\u005fid":"bob"}}}', '{"event_type":"chat.update","data":{"chat_config":{"user\\u005fid":"alice"}}}'],
      ];
      for (const [i, [frame, expected]] of frames.entries()) {
        ws.send(frame);
        await nextEvent(ws, 'chat.updated');
        assert.equal(stack.emulator.websockets[0]?.frames[i]?.data.toString(), expected);
        assert.equal((lastUpdate()?.data.chat_config as Record<string, unknown>).user_id, 'alice', frame);
      }
      ws.close();
      await closed(ws);
    });

    // Issue 15: what a decoder could read another way than the gateway is refused, not guessed at.
    for (const [what, frame] of [
      ['a repeated chat_config', '{"event_type":"chat.update","data":{"chat_config":{"user_id":"bob"},"chat_config":{"user_id":"carol"}}}'],
      ['a repeated user_id', '{"event_type":"chat.update","data":{"chat_config":{"user_id":"bob","user_id":"carol"}}}'],
      ['USER_ID in another letter case', '{"event_type":"chat.update","data":{"chat_config":{"USER_ID":"bob"}}}'],
      ['Chat_Config in another letter case', '{"event_type":"chat.update","data":{"Chat_Config":{"user_id":"bob"}}}'],
      ['DATA in another letter case', '{"event_type":"chat.update","DATA":{"chat_config":{"user_id":"bob"}}}'],
      ['a repeated event_type hiding a chat.update', '{"event_type":"chat.update","data":{"chat_config":{"user_id":"bob"}},"event_type":"input_text_buffer.append"}'],
      ['EVENT_TYPE in another letter case', '{"EVENT_TYPE":"chat.update","data":{"chat_config":{"user_id":"bob"}}}'],
    ] as const) {
      it(`ws-event-ambiguity-refused: ${what} closes the socket with 1008 and never reaches Coze`, async () => {
        const before = stack.emulator.websockets.length;
        const ws = await openWebSocket(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: bearer(jwt) });
        const code = closed(ws);
        ws.send(frame);
        assert.equal(await code, 1008);
        await until(() => stack.emulator.openWebSockets === 0, 'the upstream socket was closed');
        assert.deepEqual(stack.emulator.websockets[before]?.frames, []);
      });
    }

    // Not strict JSON, as on the HTTP path (400 bad-json-body there), yet a decoder more lenient
    // than the gateway's (one that skips a byte-order mark, or stops after the first value)
    // would apply Bob's user id.
    const bob = JSON.stringify(forged('bob'));
    for (const [what, frame] of [
      ['trailing bytes after the event', Buffer.from(`${bob} }garbage`)],
      ['a UTF-8 byte-order mark before the event', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(bob)])],
    ] as const) {
      it(`ws-chat-update-not-strict-json-refused: ${what} closes the socket with 1008 and never reaches Coze`, async () => {
        const before = stack.emulator.websockets.length;
        const ws = await openWebSocket(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: bearer(jwt) });
        const code = closed(ws);
        ws.send(frame);
        const outcome = await Promise.race([code, sleep(5000).then(() => 'still open after 5 s')]);
        ws.terminate();
        assert.equal(outcome, 1008);
        await until(() => stack.emulator.openWebSockets === 0, 'the upstream socket was closed');
        assert.deepEqual(stack.emulator.websockets[before]?.frames, []);
      });
    }

    it('a chat.update too deeply nested to check is never forwarded: the socket closes with 1008', async () => {
      const ws = await openWebSocket(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: bearer(jwt) });
      const code = closed(ws);
      ws.send(`{"event_type":"chat.update","data":{"chat_config":{"user_id":"bob"},"x":${'['.repeat(300)}${']'.repeat(300)}}}`);
      assert.equal(await code, 1008);
      await until(() => stack.emulator.openWebSockets === 0, 'the upstream socket was closed');
      assert.deepEqual(stack.emulator.websockets[0]?.frames, []);
    });

    it('chat.update on an audio path cannot change whose session the socket is', async () => {
      const ws = await openWebSocket(`${wsUrl}/v1/audio/transcriptions`, { authorization: bearer(jwt) });
      ws.send(JSON.stringify(forged('bob')));
      // Coze does not know chat.update on this path and says so.
      const { event } = await nextEvent(ws, 'error');
      assert.equal((event.data as { code: number }).code, 4000);
      const upstream = stack.emulator.websockets[0];
      assert.equal(upstream?.sessionName, 'alice');
      assert.equal(stack.emulator.sessionForToken(/^Bearer (\S+)$/.exec(String(upstream?.headers.authorization))?.[1] ?? ''), 'alice');
      ws.close();
      await closed(ws);
    });
  });

  describe('frames and the upgrade request', () => {
    it('an oversized frame (over 16 MiB) closes the socket with 1009 and none of it reaches Coze', async () => {
      const ws = await openWebSocket(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: bearer(jwt) });
      ws.on('error', () => undefined);
      const code = closed(ws);
      ws.send(Buffer.alloc(16 * 1024 * 1024 + 1, 0x20));
      assert.equal(await code, 1009);
      await until(() => stack.emulator.openWebSockets === 0, 'the upstream socket was closed');
      assert.deepEqual(stack.emulator.websockets[0]?.received, []);
    });

    it('path tricks on an upgrade are 400 bad-path before any credential is read', async () => {
      // Raw bytes: a WebSocket client would resolve `..` and `//` before sending.
      for (const path of ['/v1/chat/../audio/speech', '/v1/chat/%2e%2e/audio/speech', '/v1//chat', '/v1/chat%2f..%2fconversations', '/v1/chat;jsessionid=1', '/v1/chat/.']) {
        assertEnvelope(await rawExchange(stack.url, handshake(path, 'gateway'), 1500), 400, 'bad-path');
      }
      assertNothingReachedCoze(stack);
    });

    it('an absolute-URI upgrade naming another host is refused; a foreign Host still only reaches coze.wsBaseUrl', async () => {
      const decoy = await startDecoy();
      try {
        const absolute = await rawExchange(stack.url, handshake(`http://${decoy.address}/v1/chat?bot_id=bot-ok`, decoy.address), 1500);
        assertEnvelope(absolute, 400, 'absolute-uri');
        assertNothingReachedCoze(stack);

        const foreignHost = await rawExchange(stack.url, handshake('/v1/chat?bot_id=bot-ok', decoy.address), 500);
        assert.equal(foreignHost.status, 101);
        assert.equal(stack.emulator.websockets.length, 1, 'the socket went to the emulator');
        assert.equal(decoy.hits, 0, 'never to the host the caller named');
      } finally {
        await decoy.close();
      }
    });
  });

  describe('a reader that stops reading', () => {
    it('ws-slow-reader-bounded: the gateway pauses Coze instead of queueing without bound', async () => {
      stack.emulator.setApiFault({ kind: 'flood', times: 1 });
      const socket = await rawUpgrade(`/v1/audio/speech`, { authorization: bearer(jwt) });
      socket.pause(); // never read: the kernel buffers fill, then the gateway's queue would.

      let last = -1;
      for (let i = 0; i < 100; i++) {
        await sleep(100);
        const now = stack.emulator.floodBytesWritten;
        if (now === last || now > 256 * 2 ** 20) break;
        last = now;
      }
      const queued = [...serverSockets].reduce((sum, s) => sum + s.writableLength, 0);
      const flooded = stack.emulator.floodBytesWritten;
      assert.ok(queued < 4 * 2 ** 20, `the gateway queued ${(queued / 2 ** 20).toFixed(1)} MiB for the slow reader`);
      assert.equal(stack.emulator.floodBytesWritten, last, `Coze was stopped (it wrote ${(flooded / 2 ** 20).toFixed(1)} MiB)`);

      socket.destroy();
      await until(() => stack.emulator.openWebSockets === 0, 'the upstream socket closed when the reader left');
    });
  });

  /** A WebSocket handshake as raw bytes, with Alice's credential. */
  function handshake(target: string, host: string): string {
    const key = randomBytes(16).toString('base64');
    return `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\nAuthorization: ${bearer(jwt)}\r\n\r\n`;
  }

  function rawUpgrade(path: string, headers: Record<string, string>): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const { port } = new URL(stack.url);
      const req = http.request({
        host: '127.0.0.1',
        port,
        path,
        headers: { ...headers, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') },
      });
      req.on('upgrade', (res, socket) => {
        assert.equal(res.statusCode, 101);
        resolve(socket);
      });
      req.on('response', (res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
      req.on('error', reject);
      req.end();
    });
  }
});
