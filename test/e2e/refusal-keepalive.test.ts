import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pipelinedExchange } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';

/**
 * A refusal of a request with no body keeps the keep-alive connection, as Coze's own answers
 * do: closing it cost the client a new connection (and TLS handshake) per refused call. Only a
 * declared body the gateway did not read closes it.
 */
describe('refusals and keep-alive', () => {
  let stack: Stack;
  let auth: string;

  before(async () => {
    stack = await startStack();
    auth = `Bearer ${await stack.callerToken('alice')}`;
  });
  after(() => stack.close());

  const refusals: Record<string, { request: string; status: number; reason: string }> = {
    'no credential (401)': { request: 'GET /v1/conversations?bot_id=b HTTP/1.1\r\nHost: gw\r\n\r\n', status: 401, reason: 'credential-missing' },
    'refused route (403)': { request: 'GET /v1/bots HTTP/1.1\r\nHost: gw\r\nAuthorization: AUTH\r\n\r\n', status: 403, reason: 'route-forbidden' },
    'bad path (400)': { request: 'GET /v1/bots/../x HTTP/1.1\r\nHost: gw\r\nAuthorization: AUTH\r\n\r\n', status: 400, reason: 'bad-path' },
  };

  for (const [name, refusal] of Object.entries(refusals)) {
    it(`refusal-keeps-keepalive: two pipelined bodyless requests refused for ${name} get two answers on one open connection`, async () => {
      const request = refusal.request.replace('AUTH', auth);
      const { responses, closed } = await pipelinedExchange(stack.url, request + request, 2);
      assert.equal(responses.length, 2, 'both requests answered');
      assert.equal(closed, false, 'the connection is still open after both answers');
      for (const res of responses) {
        assert.equal(res.status, refusal.status, res.body);
        assert.equal(res.headers['x-gateway-error'], refusal.reason);
        assert.notEqual(res.headers.connection, 'close');
      }
    });
  }

  it('refusal-keeps-keepalive: a refused request with an unread declared body closes the connection after its answer', async () => {
    const body = '{"bot_id":"b"}';
    const request = `POST /v1/conversation/create HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const { responses, closed } = await pipelinedExchange(stack.url, request + request, 2);
    assert.equal(responses.length, 1, 'only the first request is answered');
    assert.equal(closed, true);
    const [res] = responses;
    assert.equal(res?.status, 401);
    assert.equal(res?.headers['x-gateway-error'], 'credential-missing');
    assert.equal(res?.headers.connection, 'close');
  });
});
