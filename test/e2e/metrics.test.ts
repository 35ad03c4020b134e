import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { startStack, type Stack } from '../helpers/stack.js';

/** Reads one sample from Prometheus text, e.g. value(text, 'x_total', {route: 'chat'}). */
function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v) && Object.keys(have).length === Object.keys(labels).length) return Number(match[3]);
  }
  return undefined;
}

describe('metrics after a scripted mix of traffic', () => {
  let stack: Stack;
  let text: string;

  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok' } });
    const alice = await stack.callerToken('alice');
    const bob = await stack.callerToken('bob');
    const agent = request(stack.url);

    // 5 concurrent first requests for alice: 1 miss + 4 coalesced, 1 mint.
    await Promise.all(Array.from({ length: 5 }, () => agent.get('/v1/bots/bot-ok').set('authorization', `Bearer ${alice}`).expect(200)));
    // 3 more for alice: hits. 1 for bob: miss + mint.
    for (let i = 0; i < 3; i++) await agent.get('/v1/bots/bot-ok').set('authorization', `Bearer ${alice}`).expect(200);
    await agent.get('/v1/conversations?bot_id=bot-ok').set('authorization', `Bearer ${bob}`).expect(200);
    // Coze error codes: bob reads a conversation that does not exist (4200) and posts a chat without user_id forced off? (4101 below).
    await agent.get('/v1/conversation/retrieve?conversation_id=nope').set('authorization', `Bearer ${bob}`).expect(200);
    // Denials and auth failures.
    await agent.get('/v1/users/me').set('authorization', `Bearer ${alice}`).expect(403);
    await agent.get('/v1/bots/bot-evil').set('authorization', `Bearer ${alice}`).expect(403);
    await agent.get('/v1/bots/bot-ok').expect(401);
    await agent.get('/v1/bots/bot-ok').set('authorization', 'Bearer not.a.jwt').expect(401);
    // A failed mint: the token endpoint refuses carol.
    stack.emulator.setTokenFault({ kind: 'error-code', errorCode: 'invalid_client', httpStatus: 200, times: 1 });
    await agent.get('/v1/bots/bot-ok').set('authorization', `Bearer ${await stack.callerToken('carol')}`).expect(502);

    const scrape = await request(stack.gateway.adminHandler).get('/metrics').expect(200);
    text = scrape.text;
  });
  after(() => stack.close());

  it('counts requests by route, method and status', () => {
    assert.equal(value(text, 'coze_gateway_http_requests_total', { route: 'bot.retrieve', method: 'GET', status: '200' }), 8);
    assert.equal(value(text, 'coze_gateway_http_requests_total', { route: 'conversation.list', method: 'GET', status: '200' }), 1);
    assert.equal(value(text, 'coze_gateway_http_requests_total', { route: 'unmatched', method: 'GET', status: '403' }), 1);
    assert.equal(value(text, 'coze_gateway_http_requests_total', { route: 'bot.retrieve', method: 'GET', status: '403' }), 1);
    assert.equal(value(text, 'coze_gateway_http_requests_total', { route: 'bot.retrieve', method: 'GET', status: '401' }), 2);
    assert.equal(value(text, 'coze_gateway_http_requests_total', { route: 'bot.retrieve', method: 'GET', status: '502' }), 1);
  });

  it('counts token cache lookups and mints by outcome', () => {
    assert.equal(value(text, 'coze_gateway_token_cache_requests_total', { result: 'miss' }), 3);
    assert.equal(value(text, 'coze_gateway_token_cache_requests_total', { result: 'coalesced' }), 4);
    // 3 repeat calls by alice, and bob's second call; denied requests never look a token up.
    assert.equal(value(text, 'coze_gateway_token_cache_requests_total', { result: 'hit' }), 4);
    assert.equal(value(text, 'coze_gateway_token_cache_requests_total', { result: 'stale' }), 0);
    assert.equal(value(text, 'coze_gateway_token_mints_total', { outcome: 'success' }), 2);
    assert.equal(value(text, 'coze_gateway_token_mints_total', { outcome: 'invalid_client' }), 1);
    assert.equal(value(text, 'coze_gateway_token_cache_entries'), 2);
  });

  it('counts auth failures, policy denials and Coze error codes', () => {
    assert.equal(value(text, 'coze_gateway_auth_failures_total', { source: 'none', reason: 'missing' }), 1);
    assert.equal(value(text, 'coze_gateway_auth_failures_total', { source: 'jwt', reason: 'malformed' }), 1);
    assert.equal(value(text, 'coze_gateway_policy_denials_total', { reason: 'route' }), 1);
    assert.equal(value(text, 'coze_gateway_policy_denials_total', { reason: 'bot' }), 1);
    assert.equal(value(text, 'coze_gateway_coze_error_codes_total', { code: '4200' }), 1);
  });

  it('never labels a metric with a user', () => {
    for (const user of ['alice', 'bob', 'carol']) assert.ok(!text.includes(user), `${user} appears in /metrics`);
  });
});

describe('logs', () => {
  it('hold no token, JWT, key or cookie after a whole run', async () => {
    const stack = await startStack();
    try {
      const jwt = await stack.callerToken('dora');
      const agent = request(stack.url);
      await agent.get('/v1/bots/b?secret_query=QUERYSECRET').set('authorization', `Bearer ${jwt}`).set('cookie', 'sid=COOKIESECRET').expect(200);
      const token = stack.gateway.tokens.peek('dora');
      assert.ok(token);
      stack.emulator.revokeToken(token.accessToken);
      await agent.get('/v1/bots/b').set('authorization', `Bearer ${jwt}`).expect(200);
      stack.emulator.setTokenFault({ kind: 'error-code', errorCode: 'invalid_client', httpStatus: 200, times: 1 });
      await agent.get('/v1/bots/b').set('authorization', `Bearer ${await stack.callerToken('eve')}`).expect(502);
      await agent.get('/v1/bots/b').set('authorization', `Bearer ${jwt.slice(0, -4)}AAAA`).expect(401);

      const all = stack.logs.join('\n');
      assert.ok(stack.logs.length >= 4);
      const secrets = [jwt, jwt.split('.')[2] as string, token.accessToken, stack.gateway.tokens.peek('dora')?.accessToken ?? 'x', 'COOKIESECRET', 'QUERYSECRET', 'PRIVATE KEY', 'czs_'];
      for (const secret of secrets) assert.ok(!all.includes(secret), `a log line holds ${secret.slice(0, 12)}...`);
      assert.ok(!all.includes('"dora"'), 'the raw session_name is hashed in logs');
      const line = JSON.parse(stack.logs.find((l) => l.includes('"route":"bot.retrieve"')) ?? '{}') as Record<string, unknown>;
      for (const field of ['requestId', 'method', 'route', 'path', 'status', 'durationMs', 'source', 'session', 'cozeLogId', 'bytesIn', 'bytesOut']) {
        assert.ok(field in line, `the request log line has ${field}`);
      }
      assert.equal(line.path, '/v1/bots/b', 'path without its query string');
    } finally {
      await stack.close();
    }
  });
});
