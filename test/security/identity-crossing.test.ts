import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ENDPOINTS, type Endpoint } from '../../src/policy/endpoints.js';
import { assertEnvelope, request } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { closed, openWebSocket, until } from '../helpers/websocket.js';

/** `{"a":{"b":value}}` for the path `a.b`, merged into `base`. */
function withPath(base: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const out = structuredClone(base);
  let node: Record<string, unknown> = out;
  const parts = path.split('.');
  for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
  node[parts.at(-1) as string] = value;
  return out;
}

function read(value: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((node, part) => (typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[part] : undefined), value);
}

/** A concrete path for an endpoint pattern: every `:param` becomes a plain id. */
const concrete = (e: Endpoint) => e.path.replace(/:[a-z_]+/g, '7000000000000000001');

const TABLE: readonly Endpoint[] = ENDPOINTS;
const userBodyFields = TABLE.flatMap((endpoint) => (endpoint.body.kind === 'json' ? (endpoint.body.fields.user ?? []).map((field) => ({ endpoint, field })) : []));
const userQueryFields = TABLE.flatMap((endpoint) => (endpoint.query.user ?? []).map((field) => ({ endpoint, field })));
const userEventFields = TABLE.flatMap((endpoint) => Object.entries(endpoint.events ?? {}).flatMap(([type, policy]) => (policy.user ?? []).map((field) => ({ endpoint, type, field }))));

/**
 * Every field that could name another user. Alice sends them all; the emulator, which enforces
 * isolation by session_name, must only ever see Alice's session and Alice's ids. The identity
 * fields come from the endpoint table itself (issue 15): a field added to the table is tested
 * here without a line more.
 */
describe('identity crossing', () => {
  let stack: Stack;
  let alice: Record<string, string>;
  let bob: Record<string, string>;

  before(async () => {
    stack = await startStack({ env: { IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', IDENTITY_TRUSTED_HEADER_ALLOW_FROM: '10.0.0.0/8', SESSION_SHARED_NAMESPACE: 'true' } });
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

  it('the table names identity fields in bodies, queries and events (the cases below are not empty)', () => {
    assert.ok(userBodyFields.length >= 6 && userQueryFields.length >= 1 && userEventFields.length >= 1);
  });

  for (const { endpoint, field } of userBodyFields) {
    it(`${endpoint.name}: ${field} in the body names bob, Coze gets alice`, async () => {
      const body = withPath({ bot_id: '7000000000000000001', workflow_id: '7100000000000000001' }, field, 'bob');
      const before = stack.emulator.requests.length;
      const res = await request(stack.url, { method: endpoint.method, path: concrete(endpoint), headers: alice, body: JSON.stringify(body) });
      assert.equal(res.headers['x-gateway-error'], undefined, res.body);
      assert.equal(stack.emulator.requests.length, before + 1, 'one request reached Coze');
      assert.equal(last()?.sessionName, 'alice');
      assert.equal(read(JSON.parse(last()?.rawBody ?? '{}'), field), 'alice');
    });
  }

  for (const { endpoint, field } of userQueryFields) {
    it(`${endpoint.name}: ${field} in the query names bob, Coze gets alice (and gets one when none is sent)`, async () => {
      await request(stack.url, { method: endpoint.method, path: `${concrete(endpoint)}?bot_id=7000000000000000001&${field}=bob`, headers: alice });
      assert.equal(last()?.sessionName, 'alice');
      assert.equal(last()?.query[field], 'alice');
      await request(stack.url, { method: endpoint.method, path: `${concrete(endpoint)}?bot_id=7000000000000000001`, headers: alice });
      assert.equal(last()?.query[field], 'alice');
    });
  }

  for (const { endpoint, type, field } of userEventFields) {
    it(`${endpoint.name}: ${field} of a ${type} event names bob, Coze gets alice`, async () => {
      const index = stack.emulator.websockets.length;
      const ws = await openWebSocket(`${stack.url.replace('http', 'ws')}${concrete(endpoint)}?bot_id=7000000000000000001`, { authorization: alice.authorization as string });
      ws.send(JSON.stringify(withPath({ id: 'e1', event_type: type }, field, 'bob')));
      await until(() => (stack.emulator.websockets[index]?.frames.length ?? 0) > 0, 'the event reached Coze');
      const seen = JSON.parse(stack.emulator.websockets[index]?.frames[0]?.data.toString() ?? '{}') as unknown;
      assert.equal(read(seen, field), 'alice');
      assert.equal(stack.emulator.websockets[index]?.sessionName, 'alice');
      ws.close();
      await closed(ws);
    });
  }

  it('claims named session_name or user_id in the JWT do not pick the session', async () => {
    const res = await request(stack.url, { path: '/v1/bots/b', headers: alice });
    assert.equal(res.status, 200, res.body);
    assert.equal(last()?.sessionName, 'alice');
  });

  it('a non-string user_id is forced too', async () => {
    const res = await request(stack.url, { method: 'POST', path: '/v3/chat', headers: alice, body: JSON.stringify({ bot_id: 'b', user_id: { id: 'bob' } }) });
    assert.equal(res.status, 200, res.body);
    assert.equal((last()?.body as { user_id: unknown }).user_id, 'alice');
  });

  it('a repeated user_id or connector_uid is refused, not guessed at (issue 15)', async () => {
    const before = stack.emulator.requests.length;
    const twice = await request(stack.url, { method: 'POST', path: '/v3/chat', headers: alice, body: '{"bot_id":"b","user_id":"bob","user_id":"carol","additional_messages":[]}' });
    assertEnvelope(twice, 400, 'ambiguous-field');
    assert.match(twice.json().msg, /user_id is sent more than once/);
    const repeated = await request(stack.url, { path: '/v1/variables?bot_id=b&connector_uid=alice&connector_uid=bob', headers: alice });
    assertEnvelope(repeated, 400, 'ambiguous-field');
    assert.match(repeated.json().msg, /connector_uid is repeated/);
    assert.equal(stack.emulator.requests.length, before, 'nothing reached Coze');
  });

  it("Bob's conversation id does not open Bob's conversation to Alice", async () => {
    const created = await request(stack.url, { method: 'POST', path: '/v1/conversation/create', headers: bob, body: JSON.stringify({ bot_id: 'b' }) });
    const conversationId = (JSON.parse(created.body) as { data: { id: string } }).data.id;
    const res = await request(stack.url, { method: 'POST', path: `/v1/conversation/message/list?conversation_id=${conversationId}`, headers: alice, body: '{}' });
    assert.equal((JSON.parse(res.body) as { code: number }).code, 4101, res.body);
    assert.equal(last()?.sessionName, 'alice');
  });

  it('headers naming another user do not change the session Coze sees and never reach it', async () => {
    const res = await request(stack.url, {
      path: '/v1/bots/b',
      headers: { ...alice, 'x-user-id': 'bob', 'x-coze-session-name': 'bob', 'x-forwarded-user-id': 'bob', 'x-real-ip': '10.0.0.1', 'x-forwarded-for': '10.0.0.1' },
    });
    assert.equal(res.status, 200, res.body);
    const headers = last()?.headers ?? {};
    assert.equal(last()?.sessionName, 'alice');
    // Coze takes the user from the token alone; only the allowlisted headers go on (issue 15).
    for (const name of ['x-user-id', 'x-coze-session-name', 'x-forwarded-user-id', 'x-forwarded-for', 'x-real-ip']) assert.equal(headers[name], undefined, name);
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
