import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { ENDPOINTS, QUERY_IDENTITY_FIELDS, type Endpoint } from '../../src/policy/endpoints.js';
import { assertEnvelope, request } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';
import { refusedUpgrade } from '../helpers/websocket.js';

const TABLE: readonly Endpoint[] = ENDPOINTS;
const concrete = (e: Endpoint) => e.path.replace(/:[a-z_]+/g, '7000000000000000001');

/**
 * Issue 15, finding 3: identity fields in the query passed unchanged on every route but
 * variables.get (`POST /v3/chat?user_id=bob`, `PUT /v1/variables?connector_uid=bob`), and Coze's
 * binder may read a query as well as a body. Now an identity field is forced where the endpoint
 * takes it in the query and refused everywhere else: every endpoint, every field, here.
 */
describe('identity-in-query: identity fields in any query are forced or refused', () => {
  let stack: Stack;
  let bearer: string;
  before(async () => {
    stack = await startStack();
    bearer = `Bearer ${await stack.callerToken('alice')}`;
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  const cases = TABLE.flatMap((endpoint) => QUERY_IDENTITY_FIELDS.filter((field) => !(endpoint.query.user ?? []).includes(field)).map((field) => ({ endpoint, field })));

  it('covers every endpoint of the table', () => {
    assert.equal(new Set(cases.map((c) => `${c.endpoint.method} ${c.endpoint.path}`)).size, TABLE.length);
  });

  for (const { endpoint, field } of cases) {
    it(`${endpoint.method} ${endpoint.path}?${field}=bob is 400 identity-in-query`, async () => {
      const path = `${concrete(endpoint)}?${field}=bob`;
      if (endpoint.transport === 'websocket') {
        const res = await refusedUpgrade(`${stack.url.replace('http', 'ws')}${path}`, { authorization: bearer });
        assert.equal(res.status, 400);
        assert.equal(res.gatewayError, 'identity-in-query');
      } else {
        const body = endpoint.body.kind === 'none' ? undefined : '{}';
        const res = await request(stack.url, { method: endpoint.method, path, headers: { authorization: bearer, 'content-type': 'application/json' }, ...(body ? { body } : {}) });
        assertEnvelope(res, 400, 'identity-in-query');
        assert.match(res.json().msg, new RegExp(`\\(${field}\\)`));
      }
      assertNothingReachedCoze(stack);
    });
  }

  it('the reported probes: POST /v3/chat?user_id=bob, PUT /v1/variables?connector_uid=bob, POST /v1/workflow/run?user_id=bob', async () => {
    const headers = { authorization: bearer, 'content-type': 'application/json' };
    assertEnvelope(await request(stack.url, { method: 'POST', path: '/v3/chat?user_id=bob', headers, body: '{"bot_id":"b","additional_messages":[]}' }), 400, 'identity-in-query');
    assertEnvelope(await request(stack.url, { method: 'PUT', path: '/v1/variables?connector_uid=bob', headers, body: '{"bot_id":"b","data":[]}' }), 400, 'identity-in-query');
    assertEnvelope(await request(stack.url, { method: 'POST', path: '/v1/workflow/run?user_id=bob', headers, body: '{"workflow_id":"w"}' }), 400, 'identity-in-query');
    assertNothingReachedCoze(stack);
  });

  it('with policy.enforceUserId off the gateway leaves identity fields alone, in the query too', async () => {
    const off = await stack.replica({ ENFORCE_USER_ID: 'false' });
    const res = await request(off.url, { method: 'POST', path: '/v3/chat?user_id=bob', headers: { authorization: bearer, 'content-type': 'application/json' }, body: '{"bot_id":"b","user_id":"bob"}' });
    assert.equal(res.status, 200, res.body);
    assert.equal(stack.emulator.requests.at(-1)?.query.user_id, 'bob');
    await off.close();
  });
});
