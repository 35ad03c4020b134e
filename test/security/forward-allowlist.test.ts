import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { request } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { closed, openWebSocket, until } from '../helpers/websocket.js';

const BOT = '7000000000000000001';

/**
 * Issue 15, finding 7: headers the gateway should not forward reached Coze (method overrides,
 * URL rewrites, client addresses, headers naming a user), and Coze's own
 * `Access-Control-Allow-Origin: *` with `Access-Control-Allow-Credentials: true` reached the
 * browser although cors.allowedOrigins was empty. Request headers now reach Coze only when
 * listed; Coze's CORS and cookie headers never reach the caller.
 */
describe('forward-allowlist: only listed request headers reach Coze; the gateway alone decides CORS', () => {
  let stack: Stack;
  let bearer: string;
  before(async () => {
    stack = await startStack({ env: { CORS_ALLOWED_ORIGINS: 'https://app.example', FORWARD_HEADERS: 'X-App-Trace' } });
    bearer = `Bearer ${await stack.callerToken('alice')}`;
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  const hostile: ReadonlyArray<readonly [string, string]> = [
    ['x-http-method-override', 'DELETE'],
    ['x-method-override', 'DELETE'],
    ['x-http-method', 'DELETE'],
    ['x-original-url', '/v1/bot/publish'],
    ['x-rewrite-url', '/v1/bot/publish'],
    ['x-original-uri', '/v1/bot/publish'],
    ['true-client-ip', '10.0.0.1'],
    ['x-client-ip', '10.0.0.1'],
    ['cf-connecting-ip', '10.0.0.1'],
    ['fastly-client-ip', '10.0.0.1'],
    ['x-cluster-client-ip', '10.0.0.1'],
    ['x-real-ip', '10.0.0.1'],
    ['x-forwarded-for', '10.0.0.1'],
    ['forwarded', 'for=10.0.0.1'],
    ['via', '1.1 evil'],
    ['x-user-id', 'bob'],
    ['x-coze-user-id', 'bob'],
    ['x-session-name', 'bob'],
    ['cookie', 'sid=secret'],
    ['origin', 'https://evil.example'],
    ['referer', 'https://evil.example/page'],
    ['x-api-key', 'not-a-known-key'],
  ];

  for (const [name, value] of hostile) {
    it(`${name} never reaches Coze, over HTTP or on a WebSocket handshake`, async () => {
      const res = await request(stack.url, { path: `/v1/conversations?bot_id=${BOT}`, headers: { authorization: bearer, [name]: value } });
      // X-Api-Key is a credential source only when API keys are configured; here it is just dropped.
      assert.equal(res.status, 200, res.body);
      assert.equal(stack.emulator.requests.at(-1)?.headers[name], undefined);
      const ws = await openWebSocket(`${stack.url.replace('http', 'ws')}/v1/chat?bot_id=${BOT}`, { authorization: bearer, [name]: value });
      await until(() => stack.emulator.websockets.length === 1, 'the socket reached Coze');
      assert.equal(stack.emulator.websockets[0]?.headers[name], undefined);
      ws.close();
      await closed(ws);
    });
  }

  it("what the official SDKs send goes on: Accept, Content-Type, User-Agent, X-Coze-Client-User-Agent, a plain X-Tt-Logid, agw-js-conv", async () => {
    const sent = {
      accept: 'application/json, text/plain, */*',
      'content-type': 'application/json',
      'user-agent': 'cozego/0.0.0 go/go1.22.0 linux/6.8.0',
      'x-coze-client-user-agent': '{"version":"0.0.0","lang":"go"}',
      'x-tt-logid': '20250101000000000000000000000001',
      'agw-js-conv': 'str',
      'x-app-trace': 'trace-1',
    };
    const res = await request(stack.url, { method: 'POST', path: '/v1/conversation/create', headers: { authorization: bearer, ...sent }, body: `{"bot_id":"${BOT}"}` });
    assert.equal(res.status, 200, res.body);
    const seen = stack.emulator.requests.at(-1)?.headers ?? {};
    for (const [name, value] of Object.entries(sent)) assert.equal(seen[name], value, `${name} (x-app-trace through policy.forwardHeaders)`);
    assert.match(String(seen.authorization), /^Bearer czs_/);
    assert.equal(seen['accept-encoding'], 'identity');
  });

  it('headers listed in Connection never reach Coze, allowlisted or in policy.forwardHeaders', async () => {
    // Hop-by-hop by the caller's own word (RFC 9110 7.6.1): meant for the gateway, not Coze.
    const res = await request(stack.url, {
      path: `/v1/conversations?bot_id=${BOT}`,
      headers: { authorization: bearer, connection: 'keep-alive, X-App-Trace, user-agent', 'x-app-trace': 'hop-only', 'user-agent': 'hop-only-ua', accept: 'application/json' },
    });
    assert.equal(res.status, 200, res.body);
    const seen = stack.emulator.requests.at(-1)?.headers ?? {};
    assert.equal(seen['x-app-trace'], undefined, 'x-app-trace (policy.forwardHeaders) named in Connection');
    assert.notEqual(seen['user-agent'], 'hop-only-ua', 'user-agent (allowlisted) named in Connection');
    assert.equal(seen.accept, 'application/json', 'a header Connection does not name still goes');
    // Connection naming only keep-alive or close takes nothing away.
    for (const connection of ['keep-alive', 'Keep-Alive', 'close']) {
      await request(stack.url, { path: `/v1/conversations?bot_id=${BOT}`, headers: { authorization: bearer, connection, 'x-app-trace': 'kept', 'user-agent': 'kept-ua' } });
      const plain = stack.emulator.requests.at(-1)?.headers ?? {};
      assert.equal(plain['x-app-trace'], 'kept', connection);
      assert.equal(plain['user-agent'], 'kept-ua', connection);
    }
  });

  it('a client X-Tt-Logid that is not a plain token is dropped', async () => {
    for (const logId of ['has space', 'x'.repeat(65), 'semi;colon', '../../etc']) {
      await request(stack.url, { path: `/v1/conversations?bot_id=${BOT}`, headers: { authorization: bearer, 'x-tt-logid': logId } });
      assert.equal(stack.emulator.requests.at(-1)?.headers['x-tt-logid'], undefined, logId);
    }
  });

  it("Coze's Access-Control-* and Set-Cookie never reach a caller whose origin is not allowed", async () => {
    for (const headers of [{ authorization: bearer }, { authorization: bearer, origin: 'https://evil.example' }] as Array<Record<string, string>>) {
      const res = await request(stack.url, { path: `/v1/conversations?bot_id=${BOT}`, headers });
      assert.equal(res.status, 200);
      assert.deepEqual(Object.keys(res.headers).filter((h) => h.startsWith('access-control-') || h === 'set-cookie'), [], JSON.stringify(res.headers));
    }
  });

  it('an allowed origin gets the gateway\'s own CORS answer, never Coze\'s "*"', async () => {
    const res = await request(stack.url, { path: `/v1/conversations?bot_id=${BOT}`, headers: { authorization: bearer, origin: 'https://app.example' } });
    assert.equal(res.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
    assert.equal(res.headers['set-cookie'], undefined);
  });

  it('with cors.allowedOrigins empty no CORS header reaches any caller', async () => {
    const bare = await stack.replica({ CORS_ALLOWED_ORIGINS: '' });
    const res = await request(bare.url, { path: `/v1/conversations?bot_id=${BOT}`, headers: { authorization: bearer, origin: 'https://app.example' } });
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.headers).filter((h) => h.startsWith('access-control-')), []);
    await bare.close();
  });

  for (const name of ['Authorization', 'cookie', 'X-Forwarded-For', 'x-forwarded-user', 'X-HTTP-Method-Override', 'proxy-authorization', 'host', 'true-client-ip', 'not a header']) {
    it(`start-up refuses policy.forwardHeaders naming ${JSON.stringify(name)}`, () => {
      const env = { COZE_APP_ID: '1', COZE_KEY_ID: 'k', COZE_PRIVATE_KEY: stack.privateKeyPem, IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', FORWARD_HEADERS: `x-fine,${name}` };
      assert.throws(
        () => loadConfig({ env }),
        (err: unknown) => err instanceof ConfigError && /policy\.forwardHeaders \(FORWARD_HEADERS\): /.test(err.message) && err.issues.length === 1,
      );
    });
  }
});
