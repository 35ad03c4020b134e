import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import { startStack, type Stack } from '../helpers/stack.js';
import { closed, nextEvent, nextMessage, openWebSocket as open, refusedUpgrade as refusal, until } from '../helpers/websocket.js';

describe('WebSocket relay', () => {
  let stack: Stack;
  let wsUrl: string;
  let jwt: string;

  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok' } });
    wsUrl = stack.url.replace('http', 'ws');
    jwt = await stack.callerToken('alice');
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  it('relays frames both ways byte for byte, text and binary, with the session token upstream in header and query', async () => {
    const ws = await open(`${wsUrl}/v1/chat?bot_id=bot-ok&device_id=42`, { authorization: `Bearer ${jwt}` });
    const upstream = stack.emulator.websockets[0];
    assert.ok(upstream);
    // Coze speaks first: its chat.created reaches the client as Coze wrote it.
    const created = await nextMessage(ws);
    assert.deepEqual(created, { data: upstream.sent[0]?.data, isBinary: false });
    assert.equal(JSON.parse(created.data.toString()).event_type, 'chat.created');

    // Client to Coze: a text event and a binary frame arrive unchanged, frame type kept.
    const text = JSON.stringify({ id: '1', event_type: 'input_text_buffer.append', data: { delta: 'hi' } });
    ws.send(text);
    ws.send(Buffer.from([0, 1, 2, 255]), { binary: true });
    await until(() => upstream.frames.length === 2, 'both frames reached Coze');
    assert.deepEqual(upstream.frames[0], { data: Buffer.from(text), isBinary: false });
    assert.deepEqual(upstream.frames[1], { data: Buffer.from([0, 1, 2, 255]), isBinary: true });
    // Coze refuses both (an audio-less chat socket knows neither), and its answers come back as written.
    for (const i of [1, 2]) assert.deepEqual(await nextMessage(ws), { data: upstream.sent[i]?.data, isBinary: false });
    assert.equal(JSON.parse(upstream.sent[1]?.data.toString() ?? '').event_type, 'error');

    // Coze to client: a binary frame arrives as binary, unchanged.
    stack.emulator.sendOnWebSocket(0, Buffer.from([255, 0, 10, 13]), true);
    assert.deepEqual(await nextMessage(ws), { data: Buffer.from([255, 0, 10, 13]), isBinary: true });

    assert.equal(upstream.sessionName, 'alice');
    assert.match(String(upstream.headers.authorization), /^Bearer czs_/);
    assert.match(upstream.query.authorization ?? '', /^Bearer czs_/);
    assert.equal(upstream.query.bot_id, 'bot-ok');
    assert.equal(upstream.query.device_id, '42');
    assert.ok(!JSON.stringify(upstream).includes(jwt), "the caller's credential never went upstream");
    ws.close();
    await closed(ws);
  });

  it('takes the credential from the authorization query parameter (browsers) and removes it', async () => {
    const ws = await open(`${wsUrl}/v1/audio/speech?authorization=${encodeURIComponent(`Bearer ${jwt}`)}`);
    const upstream = stack.emulator.websockets[0];
    assert.equal(upstream?.sessionName, 'alice');
    assert.ok(!upstream?.query.authorization?.includes(jwt));
    assert.ok(!JSON.stringify(stack.logs).includes(jwt), 'query strings never reach the logs');
    ws.close();
    await closed(ws);
  });

  it('forces chat_config.user_id in chat.update', async () => {
    const ws = await open(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${jwt}` });
    ws.send(JSON.stringify({ id: 'e1', event_type: 'chat.update', data: { chat_config: { user_id: 'bob', auto_save_history: true } } }));
    const { event } = await nextEvent(ws, 'chat.updated');
    const update = stack.emulator.websockets[0]?.chatUpdates[0] as { data: { chat_config: Record<string, unknown> } } | undefined;
    assert.deepEqual(update?.data.chat_config, { user_id: 'alice', auto_save_history: true });
    assert.equal((event.data as { chat_config: { user_id: string } }).chat_config.user_id, 'alice', 'Coze confirms the forced user');
    ws.close();
    await closed(ws);
  });

  it('refuses an unauthenticated upgrade, a bad credential and a disallowed bot with an HTTP status', async () => {
    const none = await refusal(`${wsUrl}/v1/chat?bot_id=bot-ok`);
    assert.equal(none.status, 401);
    assert.equal(none.gatewayError, 'credential-missing');
    assert.equal(JSON.parse(none.body).code, 4100, "Coze's auth-error code, so the Chat SDKs refresh their token");
    const bad = await refusal(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: 'Bearer a.b.c' });
    assert.equal(bad.status, 401);
    const bot = await refusal(`${wsUrl}/v1/chat?bot_id=bot-evil`, { authorization: `Bearer ${jwt}` });
    assert.equal(bot.status, 403);
    assert.equal(bot.gatewayError, 'bot-forbidden');
    const route = await refusal(`${wsUrl}/v1/conversations`, { authorization: `Bearer ${jwt}` });
    assert.equal(route.status, 403);
    assert.equal(stack.emulator.websockets.length, 0, 'nothing reached Coze');
  });

  it('ws-revoked-token-retried: a token Coze revoked is dropped and the upgrade dials once more with a fresh one', async () => {
    const first = await open(`${wsUrl}/v1/audio/speech`, { authorization: `Bearer ${jwt}` });
    first.close();
    await closed(first);
    const revoked = /^Bearer (\S+)$/.exec(String(stack.emulator.websockets[0]?.headers.authorization))?.[1] ?? '';
    stack.emulator.revokeToken(revoked);
    const exchanges = stack.emulator.stats.exchanges;

    const ws = await open(`${wsUrl}/v1/audio/speech`, { authorization: `Bearer ${jwt}` });
    const [refused, accepted] = stack.emulator.websockets.slice(1);
    assert.equal(refused?.sessionName, undefined, 'Coze refused the revoked token (HTTP 401, code 4100)');
    assert.equal(refused?.headers.authorization, `Bearer ${revoked}`);
    assert.equal(accepted?.sessionName, 'alice');
    assert.notEqual(accepted?.headers.authorization, `Bearer ${revoked}`);
    assert.equal(stack.emulator.stats.exchanges, exchanges + 1, 'one fresh token');
    ws.close();
    await closed(ws);
    // The cache holds the fresh token: the next socket needs no retry.
    const again = await open(`${wsUrl}/v1/audio/speech`, { authorization: `Bearer ${jwt}` });
    assert.equal(stack.emulator.websockets.length, 4);
    again.close();
    await closed(again);
  });

  it('a 4100 body on a 200 handshake answer is a revoked token too', async () => {
    stack.emulator.setApiFault({ kind: 'refuse-upgrade', status: 200, code: 4100, times: 1 });
    const ws = await open(`${wsUrl}/v1/audio/transcriptions`, { authorization: `Bearer ${jwt}` });
    assert.equal(stack.emulator.websockets.length, 2, 'refused once, then dialled again');
    ws.close();
    await closed(ws);
  });

  it('ws-refused-fresh-token-answered-as-coze: when Coze refuses the fresh token too, the client gets 401 with Coze\'s envelope, not 502', async () => {
    stack.emulator.setApiFault({ kind: 'refuse-upgrade', status: 401, code: 4100, times: 2 });
    const res = await refusal(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${jwt}` });
    assert.equal(res.status, 401);
    assert.equal(res.gatewayError, undefined, "Coze's error, not the gateway's");
    assert.deepEqual(JSON.parse(res.body), { code: 4100, msg: 'authentication is invalid' });
    assert.equal(res.logId, stack.emulator.websockets[1]?.logId, "Coze's log id is kept");
    assert.equal(stack.emulator.websockets.length, 2, 'one retry, no more');
  });

  it('another handshake refusal by Coze stays 502 upstream-bad-response, without a retry', async () => {
    stack.emulator.setApiFault({ kind: 'refuse-upgrade', status: 403, code: 4101, times: 1 });
    const res = await refusal(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${jwt}` });
    assert.equal(res.status, 502);
    assert.equal(res.gatewayError, 'upstream-bad-response');
    assert.equal(stack.emulator.websockets.length, 1);
  });

  it('closing either end closes the other', async () => {
    const a = await open(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${jwt}` });
    await until(() => stack.emulator.openWebSockets === 1, 'upstream open');
    a.close(1000, 'bye');
    await closed(a);
    await until(() => stack.emulator.openWebSockets === 0, 'the upstream closed when the client did');

    const b = await open(`${wsUrl}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${jwt}` });
    await until(() => stack.emulator.openWebSockets === 1, 'upstream open');
    const clientClosed = closed(b);
    await stack.emulator.close().catch(() => undefined);
    assert.ok((await clientClosed) > 0, 'the client closed when the upstream did');
  });
});

describe('WebSocket relay leaves nothing open', () => {
  it('200 connect-and-close cycles leave no open sockets and no growth in active_websockets', async () => {
    const stack = await startStack();
    try {
      const jwt = await stack.callerToken('cyc');
      const url = `${stack.url.replace('http', 'ws')}/v1/audio/transcriptions`;
      let serverConnections = 0;
      stack.server.on('connection', (socket) => {
        serverConnections += 1;
        socket.once('close', () => (serverConnections -= 1));
      });
      for (let i = 0; i < 200; i++) {
        const ws = await open(url, { authorization: `Bearer ${jwt}` });
        ws.close();
        await closed(ws);
      }
      await until(() => stack.emulator.openWebSockets === 0, 'upstream sockets closed');
      await until(() => serverConnections === 0, 'client sockets closed');
      const metrics = await (await fetchAdmin(stack)).text();
      assert.match(metrics, /^coze_gateway_active_websockets 0$/m);
    } finally {
      await stack.close();
    }
  });
});

async function fetchAdmin(stack: Stack): Promise<Response> {
  const server = http.createServer(stack.gateway.adminHandler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address() as { port: number };
  try {
    return new Response(await (await fetch(`http://127.0.0.1:${address.port}/metrics`)).text());
  } finally {
    server.close();
  }
}
