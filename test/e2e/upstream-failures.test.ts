import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertEnvelope, request } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';

/**
 * What the forwarder's failures become for the client: one retry of a reset of a reused
 * connection for an idempotent request whose body can be sent again, none for a POST Coze may
 * have acted on or a streamed upload, and the time-to-headers deadline.
 */
describe('upstream failures', () => {
  let stack: Stack;
  let auth: Record<string, string>;

  before(async () => {
    // The idle timeout as short as the time-to-headers deadline: the client's socket, silent
    // while Coze is awaited, must not be cut before the gateway can answer.
    stack = await startStack({ flags: { 'server.upstreamTimeoutSeconds': '1', 'server.streamIdleTimeoutSeconds': '1' } });
    auth = { authorization: `Bearer ${await stack.callerToken('alice')}` };
    // A token in the cache first, so the faults below hit the API call and nothing else.
    assert.equal((await request(stack.url, { path: '/v1/bots/b', headers: auth })).status, 200);
  });
  after(() => stack.close());
  beforeEach(() => {
    stack.emulator.reset();
    stack.emulator.setApiFault(undefined);
  });

  const upstreamErrors = async (kind: string) => (await stack.gateway.metrics.upstreamErrors.get()).values.find((v) => v.labels.kind === kind)?.value ?? 0;

  it('reset-of-reused-connection-get-replayed: a GET reset on a kept-alive connection before the answer is sent once more: the client sees 200', async () => {
    // The pool's connection carried an answer just now: this GET reuses it.
    assert.equal((await request(stack.url, { path: '/v1/bots/b', headers: auth })).status, 200);
    const resetsBefore = await upstreamErrors('reset');
    stack.emulator.reset();
    stack.emulator.setApiFault({ kind: 'reset', times: 1 });
    const res = await request(stack.url, { path: '/v1/bots/b', headers: auth });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json().code, 0);
    assert.equal(stack.emulator.requests.filter((r) => r.path === '/v1/bots/b').length, 2, 'the attempt that was reset, and exactly one retry');
    assert.equal(await upstreamErrors('reset'), resetsBefore + 1);
  });

  it('reset-after-coze-received-post-not-replayed: a POST Coze received on a kept-alive connection, then a reset, reaches Coze once and the client gets 502', async () => {
    assert.equal((await request(stack.url, { path: '/v1/bots/b', headers: auth })).status, 200);
    stack.emulator.reset();
    // Coze took the request, then the connection dropped before any byte of the answer: the
    // workflow may be running (and billed), so it is not run a second time.
    stack.emulator.setApiFault({ kind: 'reset', times: 1 });
    const res = await request(stack.url, { method: 'POST', path: '/v1/workflow/run', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ workflow_id: 'w', parameters: { action: 'send_invoice' } }) });
    assertEnvelope(res, 502, 'upstream-unavailable');
    assert.equal(res.json().code, 502002);
    assert.match(res.json().msg, /^The Coze API could not be reached\. \((UND_ERR_SOCKET|ECONNRESET)\)$/);
    assert.equal(stack.emulator.requests.filter((r) => r.path === '/v1/workflow/run').length, 1, 'sent once, never replayed');
  });

  it('a reset during a streamed upload is not retried: 502, since the bytes cannot be sent again', async () => {
    stack.emulator.setApiFault({ kind: 'reset', times: 1 });
    const boundary = 'B';
    const body = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--${boundary}--\r\n`;
    const res = await request(stack.url, { method: 'POST', path: '/v1/files/upload', headers: { ...auth, 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
    assertEnvelope(res, 502, 'upstream-unavailable');
    assert.equal(stack.emulator.requests.filter((r) => r.path === '/v1/files/upload').length, 1, 'no second attempt');
  });

  it('upstream-timeout-answered-not-cut: an upstream that never answers gets 504 at server.upstreamTimeoutSeconds, even with an idle timeout as short', async () => {
    const timeoutsBefore = await upstreamErrors('timeout');
    stack.emulator.setApiFault({ kind: 'hang', times: 1 });
    const res = await request(stack.url, { path: '/v1/bots/b', headers: auth });
    assertEnvelope(res, 504, 'upstream-timeout');
    assert.equal(await upstreamErrors('timeout'), timeoutsBefore + 1);
    // The pool is not left holding the hung attempt: the next request goes through.
    assert.equal((await request(stack.url, { path: '/v1/bots/b', headers: auth })).status, 200);
  });
});

describe('a reset on a fresh upstream connection', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack();
  });
  after(() => stack.close());

  it('reset-on-fresh-connection-not-replayed: a POST /v3/chat reset on the first connection reaches Coze once and the client gets 502', async () => {
    // The gateway's first API call, so its pool holds no connection yet: Coze may have acted on
    // the request before the connection dropped (a chat created, and billed), so it is not sent again.
    stack.emulator.setApiFault({ kind: 'reset', times: 1 });
    const auth = { authorization: `Bearer ${await stack.callerToken('alice')}`, 'content-type': 'application/json' };
    const res = await request(stack.url, { method: 'POST', path: '/v3/chat', headers: auth, body: JSON.stringify({ bot_id: 'b', user_id: 'u', additional_messages: [] }) });
    assertEnvelope(res, 502, 'upstream-unavailable');
    assert.equal(stack.emulator.requests.filter((r) => r.path === '/v3/chat').length, 1, 'sent once, never replayed');
  });
});
