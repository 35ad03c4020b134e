import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import supertest from 'supertest';
import { request } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';

/**
 * Issue 14: three end-user calls of the official SDKs were refused with 403 route-forbidden
 * (issue 14). Each now reaches Coze under the route label of its endpoint.
 */
describe('end-user routes the SDKs call', () => {
  let stack: Stack;
  let headers: Record<string, string>;
  let conversationId: string;

  before(async () => {
    stack = await startStack({ emulator: { retrievesBeforeCompletion: 1 } });
    headers = { authorization: `Bearer ${await stack.callerToken('alice')}` };
    const created = await request(stack.url, { method: 'POST', path: '/v1/conversation/create', headers: { ...headers, 'content-type': 'application/json' }, body: '{"bot_id":"b","messages":[{"role":"user","content":"hi","content_type":"text"}]}' });
    conversationId = (JSON.parse(created.body) as { data: { id: string } }).data.id;
  });
  after(() => stack.close());

  const metric = async (route: string, method: string) => {
    const { text } = await supertest(stack.gateway.adminHandler).get('/metrics');
    return text.split('\n').includes(`coze_gateway_http_requests_total{route="${route}",method="${method}",status="200"} 1`);
  };

  it('post-chat-retrieve-allowed: POST /v3/chat/retrieve (coze-js and coze-py createAndPoll) reaches Coze', async () => {
    const chat = await request(stack.url, {
      method: 'POST',
      path: `/v3/chat?conversation_id=${conversationId}`,
      headers: { ...headers, 'content-type': 'application/json' },
      body: '{"bot_id":"b","user_id":"x","stream":false,"additional_messages":[{"role":"user","content":"q","content_type":"text"}]}',
    });
    const { id, status } = (JSON.parse(chat.body) as { data: { id: string; status: string } }).data;
    assert.equal(status, 'in_progress');
    // The JS SDK posts no body at all; the Python one an empty one.
    const res = await request(stack.url, { method: 'POST', path: `/v3/chat/retrieve?conversation_id=${conversationId}&chat_id=${id}`, headers });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.headers['x-gateway-error'], undefined);
    assert.equal((JSON.parse(res.body) as { data: { status: string } }).data.status, 'completed');
    assert.equal(stack.emulator.requests.at(-1)?.method, 'POST');
    assert.ok(await metric('chat.retrieve', 'POST'), 'labelled chat.retrieve');
  });

  it('post-message-retrieve-allowed: POST /v1/conversation/message/retrieve (coze-java) reaches Coze', async () => {
    const list = await request(stack.url, { method: 'POST', path: `/v1/conversation/message/list?conversation_id=${conversationId}`, headers: { ...headers, 'content-type': 'application/json' }, body: '{}' });
    const messageId = (JSON.parse(list.body) as { data: Array<{ id: string }> }).data[0]?.id;
    const res = await request(stack.url, { method: 'POST', path: `/v1/conversation/message/retrieve?conversation_id=${conversationId}&message_id=${messageId}`, headers: { ...headers, 'content-length': '0' } });
    assert.equal(res.status, 200, res.body);
    assert.equal((JSON.parse(res.body) as { code: number; data: { id: string } }).data.id, messageId);
    assert.ok(await metric('message.retrieve', 'POST'), 'labelled message.retrieve');
  });

  it('audio-live-allowed: GET /v1/audio/live/{live_id} (audio.live.retrieve in JS, Python and Go) reaches Coze', async () => {
    const res = await request(stack.url, { path: '/v1/audio/live/7450000000000000001', headers });
    assert.equal(res.status, 200, res.body);
    const data = (JSON.parse(res.body) as { data: { stream_infos: Array<{ live_type: string }> } }).data;
    assert.deepEqual(data.stream_infos.map((s) => s.live_type), ['origin', 'translation']);
    assert.equal(stack.emulator.requests.at(-1)?.path, '/v1/audio/live/7450000000000000001');
    assert.ok(await metric('audio.live', 'GET'), 'labelled audio.live');
  });
});
