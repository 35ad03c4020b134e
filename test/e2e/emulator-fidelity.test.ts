import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { request } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { closed } from '../helpers/websocket.js';

/**
 * Issue 14: behaviours the emulator shares with Coze, so that a gateway bug can no longer hide
 * behind an emulator that agrees with it (an audit of the official SDKs against the emulator), checked through the gateway.
 */
describe('emulator fidelity, through the gateway', () => {
  let stack: Stack;
  let alice: Record<string, string>;
  let bob: Record<string, string>;
  before(async () => {
    stack = await startStack();
    alice = { authorization: `Bearer ${await stack.callerToken('alice')}`, 'content-type': 'application/json' };
    bob = { authorization: `Bearer ${await stack.callerToken('bob')}`, 'content-type': 'application/json' };
  });
  after(() => stack.close());

  const chat = (stream: boolean) => JSON.stringify({ bot_id: 'b', user_id: 'x', stream, additional_messages: [{ role: 'user', content: 'hi', content_type: 'text' }] });

  it('emulator-chat-into-other-session-4101: a chat into another session’s conversation is 4101, never 500', async () => {
    const created = await request(stack.url, { method: 'POST', path: '/v1/conversation/create', headers: alice, body: '{"bot_id":"b"}' });
    const conversationId = (JSON.parse(created.body) as { data: { id: string } }).data.id;
    for (const stream of [false, true]) {
      const res = await request(stack.url, { method: 'POST', path: `/v3/chat?conversation_id=${conversationId}`, headers: bob, body: chat(stream) });
      assert.equal(res.status, 200, res.body);
      assert.match(String(res.headers['content-type']), /^application\/json/);
      assert.equal(res.json().code, 4101, res.body);
    }
    // A business error raised after the handler went async is still Coze's answer, not a 500.
    const res = await request(stack.url, { method: 'POST', path: `/v3/chat?conversation_id=${conversationId}`, headers: alice, body: JSON.stringify({ ...JSON.parse(chat(false)), auto_save_history: false }) });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json().code, 4007, res.body);
  });

  it('X-Tt-Logid on every answer: JSON, SSE, a binary audio body, and the WebSocket handshake', async () => {
    const answers = [
      await request(stack.url, { path: '/v1/conversations?bot_id=b', headers: alice }),
      await request(stack.url, { method: 'POST', path: '/v3/chat', headers: alice, body: chat(true) }),
      await request(stack.url, { method: 'POST', path: '/v1/workflow/stream_run', headers: alice, body: '{"workflow_id":"w"}' }),
      await request(stack.url, { method: 'POST', path: '/v1/audio/speech', headers: alice, body: '{"input":"hi","voice_id":"v"}' }),
    ];
    for (const res of answers) assert.match(String(res.headers['x-tt-logid']), /^\d{17}[0-9A-F]{16}$/, `${res.headers['content-type']}`);

    const ws = new WebSocket(`${stack.url.replace('http', 'ws')}/v1/audio/speech`, { headers: { authorization: alice.authorization as string } });
    const handshake = await new Promise<Record<string, string | string[] | undefined>>((resolve) => ws.once('upgrade', (res) => resolve(res.headers)));
    assert.equal(handshake['x-tt-logid'], stack.emulator.websockets.at(-1)?.logId, 'Coze’s handshake log id reached the client');
    ws.close();
    await closed(ws);
  });
});
