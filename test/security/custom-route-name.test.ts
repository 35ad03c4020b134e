import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { assertEnvelope, request } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';

const BOT = '7000000000000000001';
const WORKFLOW = '7100000000000000001';

/**
 * Issue 15, finding 2: the body and query rules were looked up by the default rules' names, so a
 * configured rule `{name: my-chat, method: POST, path: /v3/chat}` forwarded `user_id: "bob"` and
 * any bot id unchanged. Now the rules are fields of the endpoint the route matches, and a
 * configured route the gateway knows no policy for must say so (passthrough: true).
 */
describe('custom-route-name: a renamed route keeps its endpoint policy', () => {
  let dir: string;
  let stack: Stack;
  let headers: Record<string, string>;
  const configFile = (policy: Record<string, unknown>) => {
    const file = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, stringify({ policy }));
    return file;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'csg-routes-'));
    const file = configFile({
      routes: [
        { name: 'my-chat', method: 'POST', path: '/v3/chat' },
        'conversation.create',
        { name: 'workflow.info', method: 'GET', path: '/v1/workflows/:workflow_id', passthrough: true },
      ],
    });
    stack = await startStack({ env: { GATEWAY_CONFIG: file, ALLOWED_BOT_IDS: BOT, ALLOWED_WORKFLOW_IDS: WORKFLOW } });
    headers = { authorization: `Bearer ${await stack.callerToken('alice')}`, 'content-type': 'application/json' };
  });
  after(async () => {
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('my-chat forces user_id and checks bot_id exactly as the built-in chat endpoint does', async () => {
    const res = await request(stack.url, { method: 'POST', path: '/v3/chat', headers, body: `{"bot_id":"${BOT}","user_id":"bob","additional_messages":[]}` });
    assert.equal(res.status, 200, res.body);
    assert.equal(stack.emulator.requests.at(-1)?.rawBody, `{"bot_id":"${BOT}","user_id":"alice","additional_messages":[]}`);
    const before = stack.emulator.requests.length;
    assertEnvelope(await request(stack.url, { method: 'POST', path: '/v3/chat', headers, body: '{"bot_id":"7999999999999999999","additional_messages":[]}' }), 403, 'bot-forbidden');
    assertEnvelope(await request(stack.url, { method: 'POST', path: '/v3/chat', headers, body: `{"bot_id":"${BOT}","USER_ID":"bob"}` }), 400, 'ambiguous-field');
    assertEnvelope(await request(stack.url, { method: 'POST', path: '/v3/chat?user_id=bob', headers, body: `{"bot_id":"${BOT}"}` }), 400, 'identity-in-query');
    assert.equal(stack.emulator.requests.length, before, 'no refused request reached Coze');
  });

  it('its name is the route label in metrics; endpoints left out are 403', async () => {
    const text = await stack.gateway.metrics.registry.metrics();
    assert.match(text, /coze_gateway_http_requests_total\{route="my-chat",method="POST",status="200"\} [1-9]/);
    assertEnvelope(await request(stack.url, { path: `/v1/conversations?bot_id=${BOT}`, headers }), 403, 'route-forbidden');
  });

  it('a passthrough route is forwarded with its body unread, but the query and path rules still apply', async () => {
    const before = stack.emulator.requests.length;
    await request(stack.url, { path: `/v1/workflows/${WORKFLOW}`, headers });
    assert.equal(stack.emulator.requests.length, before + 1);
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, 'alice');
    assertEnvelope(await request(stack.url, { path: '/v1/workflows/7199999999999999999', headers }), 403, 'workflow-forbidden');
    assertEnvelope(await request(stack.url, { path: `/v1/workflows/${WORKFLOW}?user_id=bob`, headers }), 400, 'identity-in-query');
    assertEnvelope(await request(stack.url, { path: `/v1/workflows/${WORKFLOW}?is_published=false`, headers }), 403, 'draft-forbidden');
    assert.equal(stack.emulator.requests.length, before + 1);
  });

  const refused = (policy: Record<string, unknown>, message: RegExp) => {
    const env = { COZE_APP_ID: '1', COZE_KEY_ID: 'k', COZE_PRIVATE_KEY: stack.privateKeyPem, IDENTITY_JWT_SECRET: 'x'.repeat(32), IDENTITY_JWT_ISSUER: 'https://idp.example', IDENTITY_JWT_AUDIENCE: 'gateway', GATEWAY_CONFIG: configFile(policy) };
    assert.throws(
      () => loadConfig({ env }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, message);
        return true;
      },
    );
  };

  it('start-up refuses a route the gateway knows no policy for, naming it and saying how to choose', () => {
    refused({ routes: [{ name: 'my-chat', method: 'POST', path: '/v3/chatx' }] }, /policy\.routes: the gateway knows no policy for POST \/v3\/chatx \("my-chat"\).*passthrough: true.*\(at policy\.routes\.0\)/);
  });

  it('start-up refuses a passthrough route that overlaps a built-in endpoint, or that switches a built-in one off', () => {
    refused({ routes: [{ name: 'any-v3', method: 'POST', path: '/v3/:anything', passthrough: true }] }, /overlaps the built-in endpoint chat \(\/v3\/chat\)/);
    refused({ routes: [{ name: 'raw-chat', method: 'POST', path: '/v3/chat', passthrough: true }] }, /is the built-in endpoint chat; its policy cannot be switched off/);
    refused({ routes: [{ name: 'tokens', method: 'POST', path: '/api/permission/oauth2/token', passthrough: true }] }, /\/api\/permission\/\* is never proxied/);
  });

  it('start-up refuses unknown endpoint names in policy.routes and policy.disabledRoutes', () => {
    refused({ routes: ['chat', 'chat.delete'] }, /policy\.routes: "chat\.delete" is not a built-in endpoint.*\(at policy\.routes\.1\)/);
    refused({ disabledRoutes: ['bots.everything'] }, /policy\.disabledRoutes \(POLICY_DISABLED_ROUTES\): "bots\.everything" is not a built-in endpoint/);
  });

  it('policy.disabledRoutes turns built-in endpoints off', async () => {
    const replica = await stack.replica({ POLICY_DISABLED_ROUTES: 'my-chat' }).catch((err: unknown) => err);
    assert.ok(replica instanceof ConfigError, 'a label is not a built-in name');
    const off = await stack.replica({ GATEWAY_CONFIG: configFile({}), POLICY_DISABLED_ROUTES: 'bot.retrieve,bot.online_info' });
    stack.emulator.reset();
    assertEnvelope(await request(off.url, { path: `/v1/bots/${BOT}`, headers }), 403, 'route-forbidden');
    assertEnvelope(await request(off.url, { path: `/v1/bot/get_online_info?bot_id=${BOT}`, headers }), 403, 'route-forbidden');
    assertNothingReachedCoze(stack);
    assert.equal((await request(off.url, { method: 'POST', path: '/v3/chat', headers, body: `{"bot_id":"${BOT}"}` })).status, 200);
    await off.close();
  });
});
