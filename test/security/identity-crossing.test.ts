import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertEnvelope, request } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';

/**
 * Every field that could name another user. Alice sends them all; the emulator, which enforces
 * isolation by session_name, must only ever see Alice's session and Alice's ids.
 */
describe('identity crossing', () => {
  let stack: Stack;
  let alice: Record<string, string>;
  let bob: Record<string, string>;

  before(async () => {
    stack = await startStack({ env: { IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', IDENTITY_TRUSTED_HEADER_ALLOW_FROM: '10.0.0.0/8' } });
    alice = { authorization: `Bearer ${await stack.callerToken('alice', { session_name: 'bob', user_id: 'bob' })}`, 'content-type': 'application/json' };
    bob = { authorization: `Bearer ${await stack.callerToken('bob')}`, 'content-type': 'application/json' };
  });
  after(async () => {
    // The invariant of the whole file: every request Alice made reached Coze as Alice.
    const aliceSeen = stack.emulator.requests.filter((r) => r.sessionName !== 'bob');
    assert.ok(aliceSeen.length > 5);
    assert.ok(aliceSeen.every((r) => r.sessionName === 'alice'), 'no request of alice carried another session');
    await stack.close();
  });

  const last = () => stack.emulator.requests.at(-1);

  it('claims named session_name or user_id in the JWT do not pick the session', async () => {
    const res = await request(stack.url, { path: '/v1/bots/b', headers: alice });
    assert.equal(res.status, 200, res.body);
    assert.equal(last()?.sessionName, 'alice');
  });

  it('user_id in a chat body is forced to the caller', async () => {
    const res = await request(stack.url, { method: 'POST', path: '/v3/chat', headers: alice, body: JSON.stringify({ bot_id: 'b', user_id: 'bob', additional_messages: [] }) });
    assert.equal(res.status, 200, res.body);
    assert.equal((last()?.body as { user_id: string }).user_id, 'alice');
  });

  it('user_id given twice, or as a non-string, is forced too', async () => {
    const body = '{"bot_id":"b","user_id":"bob","user_id":"carol","additional_messages":[]}';
    const res = await request(stack.url, { method: 'POST', path: '/v3/chat', headers: alice, body });
    assert.equal(res.status, 200, res.body);
    assert.equal((last()?.body as { user_id: string }).user_id, 'alice');
    await request(stack.url, { method: 'POST', path: '/v3/chat', headers: alice, body: JSON.stringify({ bot_id: 'b', user_id: { id: 'bob' } }) });
    assert.equal((last()?.body as { user_id: unknown }).user_id, 'alice');
  });

  it('ext.user_id in a workflow body is forced to the caller', async () => {
    const res = await request(stack.url, { method: 'POST', path: '/v1/workflow/run', headers: alice, body: JSON.stringify({ workflow_id: 'w', parameters: {}, ext: { user_id: 'bob' } }) });
    assert.ok(res.status < 500, res.body);
    assert.equal((last()?.body as { ext: { user_id: string } }).ext.user_id, 'alice');
  });

  it('connector_uid in the variables query and body is forced to the caller', async () => {
    await request(stack.url, { path: '/v1/variables?bot_id=b&connector_uid=bob', headers: alice });
    assert.equal(last()?.query.connector_uid, 'alice');
    const before = stack.emulator.requests.length;
    const repeated = await request(stack.url, { path: '/v1/variables?bot_id=b&connector_uid=alice&connector_uid=bob', headers: alice });
    assertEnvelope(repeated, 400, 'bad-request');
    assert.equal(stack.emulator.requests.length, before, 'a repeated identity parameter is refused, not guessed at');
    await request(stack.url, { method: 'PUT', path: '/v1/variables', headers: alice, body: JSON.stringify({ bot_id: 'b', connector_uid: 'bob', data: [{ keyword: 'k', value: 'v' }] }) });
    assert.equal((last()?.body as { connector_uid: string }).connector_uid, 'alice');
  });

  it("Bob's conversation id does not open Bob's conversation to Alice", async () => {
    const created = await request(stack.url, { method: 'POST', path: '/v1/conversation/create', headers: bob, body: JSON.stringify({ bot_id: 'b' }) });
    const conversationId = (JSON.parse(created.body) as { data: { id: string } }).data.id;
    const res = await request(stack.url, { method: 'POST', path: `/v1/conversation/message/list?conversation_id=${conversationId}`, headers: alice, body: '{}' });
    assert.equal((JSON.parse(res.body) as { code: number }).code, 4101, res.body);
    assert.equal(last()?.sessionName, 'alice');
  });

  it('headers naming another user do not change the session Coze sees; forwarding headers are dropped', async () => {
    const res = await request(stack.url, {
      path: '/v1/bots/b',
      headers: { ...alice, 'x-user-id': 'bob', 'x-coze-session-name': 'bob', 'x-forwarded-user-id': 'bob', 'x-real-ip': '10.0.0.1', 'x-forwarded-for': '10.0.0.1' },
    });
    assert.equal(res.status, 200, res.body);
    const headers = last()?.headers ?? {};
    assert.equal(last()?.sessionName, 'alice');
    // Coze takes the user from the token alone; headers that claim a client address are dropped.
    assert.equal(headers['x-forwarded-user-id'], undefined);
    assert.equal(headers['x-forwarded-for'], undefined);
    assert.equal(headers['x-real-ip'], undefined);
  });

  it('the trusted header from outside allowFrom is 401, even with X-Forwarded-For claiming an allowed address', async () => {
    const before = stack.emulator.requests.length;
    const res = await request(stack.url, { path: '/v1/bots/b', headers: { 'x-forwarded-user': 'bob', 'x-forwarded-for': '10.1.2.3' } });
    assertEnvelope(res, 401, 'untrusted-identity-header');
    assert.equal(stack.emulator.requests.length, before);
  });

  it('the trusted header next to a valid JWT cannot switch the user', async () => {
    const res = await request(stack.url, { path: '/v1/bots/b', headers: { ...alice, 'x-forwarded-user': 'bob' } });
    assert.notEqual(res.status, 200, 'a request carrying an untrusted identity header is refused, not served as anyone');
    assert.equal(last()?.sessionName === 'bob', false);
  });
});
