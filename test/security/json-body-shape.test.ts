import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertEnvelope, rawExchange, request } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';

const BOT = '7000000000000000001';

/**
 * Issue 15, finding 4: a form content type defeated the JSON rules (a JSON body sent as
 * application/x-www-form-urlencoded was rewritten but forwarded with the form type, so a form
 * decoder upstream read `user_id=bob` out of a string value), and a body on a GET route was
 * forwarded unread. A body the gateway reads must now be application/json (415 otherwise) and
 * goes out as application/json; a body where none is expected is 400 unexpected-body.
 */
describe('json-body-shape: JSON routes take JSON only, bodiless routes take no body', () => {
  let stack: Stack;
  let bearer: string;
  before(async () => {
    stack = await startStack();
    bearer = `Bearer ${await stack.callerToken('alice')}`;
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  const chatBody = `{"bot_id":"${BOT}","user_id":"x","additional_messages":[{"role":"user","content":"user_id=bob&x=1","content_type":"text"}]}`;

  for (const type of [
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'text/plain',
    'text/plain;charset=UTF-8',
    'application/json; charset=latin1',
    'application/json; charset=utf-16',
    'application/json; boundary=x',
    'application/jsonx',
    'application/vnd.api+json',
  ]) {
    it(`a chat body sent as ${JSON.stringify(type)} is 415 unsupported-media-type`, async () => {
      const res = await request(stack.url, { method: 'POST', path: '/v3/chat', headers: { authorization: bearer, 'content-type': type }, body: chatBody });
      assertEnvelope(res, 415, 'unsupported-media-type');
      assertNothingReachedCoze(stack);
    });
  }

  it('a JSON body without a Content-Type, or with a Content-Encoding, is 415', async () => {
    assertEnvelope(await request(stack.url, { method: 'POST', path: '/v3/chat', headers: { authorization: bearer }, body: chatBody }), 415, 'unsupported-media-type');
    assertEnvelope(await request(stack.url, { method: 'PUT', path: '/v1/variables', headers: { authorization: bearer, 'content-type': 'application/x-www-form-urlencoded' }, body: 'bot_id=b&connector_uid=bob' }), 415, 'unsupported-media-type');
    assertEnvelope(await request(stack.url, { method: 'POST', path: '/v3/chat', headers: { authorization: bearer, 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: chatBody }), 415, 'unsupported-media-type');
    assertNothingReachedCoze(stack);
  });

  it('the official SDKs\' JSON types pass, and every body the gateway read goes out as application/json', async () => {
    for (const type of ['application/json', 'application/json; charset=utf-8', 'application/json; charset=UTF-8', 'Application/JSON;charset="utf-8"']) {
      const res = await request(stack.url, { method: 'POST', path: '/v3/chat', headers: { authorization: bearer, 'content-type': type }, body: chatBody });
      assert.equal(res.status, 200, `${type}: ${res.body}`);
      const seen = stack.emulator.requests.at(-1);
      assert.equal(seen?.headers['content-type'], 'application/json', type);
      assert.equal(seen?.rawBody, chatBody.replace('"user_id":"x"', '"user_id":"alice"'));
    }
  });

  for (const [method, path] of [
    ['GET', `/v1/variables?bot_id=${BOT}`],
    ['GET', `/v1/conversations?bot_id=${BOT}`],
    ['GET', `/v1/bots/${BOT}`],
    ['DELETE', '/v1/conversations/7400000000000000001'],
    ['POST', '/v3/chat/retrieve?conversation_id=1&chat_id=2'],
    ['POST', '/v1/conversation/message/retrieve?conversation_id=1&message_id=2'],
  ] as const) {
    it(`${method} ${path.split('?')[0]} with a body is 400 unexpected-body (declared or chunked)`, async () => {
      const body = '{"connector_uid":"bob","user_id":"bob"}';
      const declared = await request(stack.url, { method, path, headers: { authorization: bearer, 'content-type': 'application/json', 'content-length': String(body.length) }, body });
      assertEnvelope(declared, 400, 'unexpected-body');
      const chunked = await rawExchange(
        stack.url,
        `${method} ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: ${bearer}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      );
      assert.equal(chunked.status, 400, chunked.raw);
      assert.equal(chunked.headers['x-gateway-error'], 'unexpected-body');
      assertNothingReachedCoze(stack);
    });
  }

  it('what the SDKs send on bodiless calls passes: Content-Length 0 with a JSON type (coze-java), an empty chunked body, no body', async () => {
    const java = await request(stack.url, { method: 'POST', path: '/v3/chat/retrieve?conversation_id=1&chat_id=2', headers: { authorization: bearer, 'content-type': 'application/json', 'content-length': '0' } });
    assert.equal(java.headers['x-gateway-error'], undefined, java.body);
    const emptyChunked = await rawExchange(stack.url, `POST /v3/chat/retrieve?conversation_id=1&chat_id=2 HTTP/1.1\r\nHost: x\r\nAuthorization: ${bearer}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`);
    assert.equal(emptyChunked.headers['x-gateway-error'], undefined, emptyChunked.raw);
    const none = await request(stack.url, { path: `/v1/conversations?bot_id=${BOT}`, headers: { authorization: bearer } });
    assert.equal(none.status, 200, none.body);
    assert.equal(stack.emulator.requests.length, 3);
  });

  it('a required JSON body that is missing or blank is 400 bad-json-body; an optional one may be left out', async () => {
    assertEnvelope(await request(stack.url, { method: 'POST', path: '/v3/chat', headers: { authorization: bearer, 'content-type': 'application/json' } }), 400, 'bad-json-body');
    assertEnvelope(await request(stack.url, { method: 'POST', path: '/v3/chat', headers: { authorization: bearer, 'content-type': 'application/json' }, body: ' \n ' }), 400, 'bad-json-body');
    assertNothingReachedCoze(stack);
    const clear = await request(stack.url, { method: 'POST', path: '/v1/conversation/create', headers: { authorization: bearer } });
    assert.equal(clear.status, 200, clear.body);
  });
});
