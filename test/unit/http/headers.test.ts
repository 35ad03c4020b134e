import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FORWARDED_REQUEST_HEADERS, forwardHeaderProblem, scrubRequestHeaders, scrubResponseHeaders } from '../../../src/http/headers.js';

describe('headers: forward by allowlist, scrub answers', () => {
  it('forwards only the allowlisted request headers and the configured extras', () => {
    const out = scrubRequestHeaders(
      {
        accept: 'a',
        'content-type': 'application/json',
        'user-agent': 'u',
        'x-coze-client-user-agent': '{}',
        'x-tt-logid': 'abc123',
        'agw-js-conv': 'str',
        'x-app-trace': 't',
        'x-http-method-override': 'DELETE',
        'true-client-ip': '1.2.3.4',
        authorization: 'Bearer x',
        cookie: 'c',
        host: 'h',
        'content-length': '5',
      },
      { forward: ['x-app-trace'] },
    );
    assert.deepEqual(out, { accept: 'a', 'content-type': 'application/json', 'user-agent': 'u', 'x-coze-client-user-agent': '{}', 'x-tt-logid': 'abc123', 'agw-js-conv': 'str', 'x-app-trace': 't', 'content-length': '5' });
    assert.deepEqual(scrubRequestHeaders({ 'transfer-encoding': 'chunked', 'content-length': '5' }), {}, 'a chunked body gets its length from the gateway');
    assert.deepEqual(scrubRequestHeaders({ 'x-tt-logid': 'not a token' }), {});
    assert.equal(FORWARDED_REQUEST_HEADERS.length, 6);
  });

  it('drops cookies, CORS, origin policy and hop-by-hop headers from answers, and what Connection names', () => {
    const out = scrubResponseHeaders({
      'content-type': 'application/json',
      'x-tt-logid': 'L',
      'set-cookie': ['a=b'],
      'access-control-allow-origin': '*',
      'access-control-allow-credentials': 'true',
      'access-control-expose-headers': 'x',
      'strict-transport-security': 'max-age=1',
      'alt-svc': 'h3=":443"',
      'clear-site-data': '"*"',
      nel: '{}',
      'report-to': '{}',
      'x-request-id': 'theirs',
      connection: 'keep-alive, x-secret',
      'x-secret': 's',
      'transfer-encoding': 'chunked',
    });
    assert.deepEqual(out, { 'content-type': 'application/json', 'x-tt-logid': 'L' });
  });

  it('response-headers-own-win: the gateway\'s own headers come first and win, and a Vary lists both', () => {
    const own = { 'x-request-id': 'ours', 'access-control-allow-origin': 'https://app.example', vary: 'Origin', connection: 'close' };
    const out = scrubResponseHeaders({ 'content-type': 'application/json', 'x-request-id': 'theirs', 'access-control-allow-origin': '*', vary: 'Accept-Encoding', connection: 'keep-alive' }, own);
    assert.deepEqual(out, { 'x-request-id': 'ours', 'access-control-allow-origin': 'https://app.example', vary: 'Origin, Accept-Encoding', connection: 'close', 'content-type': 'application/json' });
    assert.deepEqual(Object.keys(out).slice(0, 4), Object.keys(own), 'in the order the gateway set them');
    assert.deepEqual(own, { 'x-request-id': 'ours', 'access-control-allow-origin': 'https://app.example', vary: 'Origin', connection: 'close' }, 'the caller\'s object is not changed');
  });

  it('policy.forwardHeaders can never add a credential, a route, a client address or framing', () => {
    for (const name of ['authorization', 'Cookie', 'x-api-key', 'proxy-authorization', 'x-forwarded-for', 'X-Forwarded-Host', 'forwarded', 'host', 'x-real-ip', 'true-client-ip', 'cf-connecting-ip', 'x-original-url', 'x-http-method-override', 'content-length', 'transfer-encoding', 'connection', 'sec-websocket-key', 'access-control-allow-origin']) {
      assert.match(forwardHeaderProblem(name, undefined) ?? '', /never forwarded/, name);
    }
    assert.match(forwardHeaderProblem('X-Forwarded-User', 'x-forwarded-user') ?? '', /trusted identity header/);
    assert.match(forwardHeaderProblem('x-user', 'X-User') ?? '', /trusted identity header/);
    assert.match(forwardHeaderProblem('a b', undefined) ?? '', /not a header name/);
    assert.equal(forwardHeaderProblem('x-app-trace', 'x-forwarded-user'), undefined);
  });
});
