import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startStack, type Stack } from '../helpers/stack.js';

const chat = (stack: Stack, jwt: string, botId = 'bot-ok') =>
  fetch(`${stack.url}/v3/chat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
    body: JSON.stringify({ bot_id: botId, stream: false, additional_messages: [{ role: 'user', content: 'hi', content_type: 'text' }] }),
  });

const scopeOf = (permissions: string[], bots: string[]) => ({
  account_permission: { permission_list: permissions },
  attribute_constraint: { connector_bot_chat_attribute: { bot_id_list: bots } },
});

describe("Coze's own hooks: custom_consumer in the signed JWT", () => {
  it('is absent unless configured', async () => {
    const stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok' } });
    try {
      assert.equal((await chat(stack, await stack.callerToken('alice'))).status, 200);
      assert.equal(stack.emulator.exchangeLog.length, 1);
      assert.equal(stack.emulator.exchangeLog[0]?.sessionContext, undefined, 'no session_context in the JWT');
      assert.equal(stack.emulator.exchangeLog[0]?.scope, undefined, 'no scope in the token request');
    } finally {
      await stack.close();
    }
  });

  it('carries the rendered template in session_context.device_info.custom_consumer, per user', async () => {
    const stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', COZE_CUSTOM_CONSUMER: 'tenant-{claims.tenant}:{subject}' } });
    try {
      const alice = await stack.callerToken('alice', { tenant: 'acme' });
      const bob = await stack.callerToken('bob', { tenant: 'acme' });
      const answer = (await (await chat(stack, alice)).json()) as { code: number };
      assert.equal(answer.code, 0);
      assert.equal((await chat(stack, bob)).status, 200);
      const contexts = new Map(stack.emulator.exchangeLog.map((r) => [r.sessionName, r.sessionContext]));
      assert.deepEqual(contexts.get('alice'), { device_info: { custom_consumer: 'tenant-acme:alice' } });
      assert.deepEqual(contexts.get('bob'), { device_info: { custom_consumer: 'tenant-acme:bob' } });
      // The token the emulator issued is bound to it, as Coze would bill it.
      const record = stack.emulator.exchangeLog.find((r) => r.sessionName === 'alice');
      assert.equal(stack.emulator.tokenInfo(record?.accessToken ?? '')?.customConsumer, 'tenant-acme:alice');
    } finally {
      await stack.close();
    }
  });

  it('in HMAC mode carries a stable pseudonym, never the user id', async () => {
    const secret = 'a-custom-consumer-secret-of-32-bytes!!';
    const stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', COZE_CUSTOM_CONSUMER: '{subject}', COZE_CUSTOM_CONSUMER_HMAC_SECRET: secret } });
    try {
      assert.equal((await chat(stack, await stack.callerToken('alice@example.com'))).status, 200);
      const sent = (stack.emulator.exchangeLog[0]?.sessionContext as { device_info: { custom_consumer: string } }).device_info.custom_consumer;
      assert.equal(sent, createHmac('sha256', secret).update('alice@example.com').digest('base64url'));
      assert.doesNotMatch(sent, /alice/);
      assert.ok(!stack.logs.some((l) => l.includes(secret)), 'the secret is never logged');
    } finally {
      await stack.close();
    }
  });

  it('refuses a caller whose claims render an invalid custom_consumer with 400 bad-custom-consumer, before Coze', async () => {
    const stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', COZE_CUSTOM_CONSUMER: '{claims.nickname}' } });
    try {
      const res = await chat(stack, await stack.callerToken('alice', { nickname: 'has a space' }));
      assert.equal(res.status, 400);
      assert.equal(res.headers.get('x-gateway-error'), 'bad-custom-consumer');
      const body = (await res.json()) as { code: number; msg: string };
      assert.equal(body.code, 400010);
      assert.match(body.msg, /invalid custom_consumer for Coze \(it must be 1 to 128 printable ASCII characters\)/);
      assert.equal(stack.emulator.tokenRequests + stack.emulator.requests.length, 0);
    } finally {
      await stack.close();
    }
  });
});

describe("Coze's own hooks: the channel scope, narrowest for vended tokens", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      channelApp: true,
      env: {
        ALLOWED_BOT_IDS: 'bot-ok,bot-two',
        COZE_SCOPE_ENABLED: 'true',
        COZE_SCOPE_PERMISSIONS: 'Connector.botChat,Connector.botVoice',
        TOKEN_VENDING_ENABLED: 'true',
        TOKEN_VENDING_PERMISSIONS: 'Connector.botChat',
      },
    });
  });
  after(() => stack.close());

  it("proxied tokens carry the configured scope, its bot_id_list defaulting to policy.allowedBotIds", async () => {
    const alice = await stack.callerToken('alice');
    assert.equal((await chat(stack, alice)).status, 200);
    const record = stack.emulator.exchangeLog.find((r) => r.sessionName === 'alice');
    assert.deepEqual(record?.scope, scopeOf(['Connector.botChat', 'Connector.botVoice'], ['bot-ok', 'bot-two']));
    assert.deepEqual([...(stack.emulator.tokenInfo(record?.accessToken ?? '')?.botIds ?? [])], ['bot-ok', 'bot-two']);
  });

  it('vended tokens get the narrowest scope configured, and are not the proxied token', async () => {
    const bob = await stack.callerToken('bob');
    assert.equal((await chat(stack, bob)).status, 200);
    const vended = (await (await fetch(`${stack.url}/gateway/token`, { method: 'POST', headers: { authorization: `Bearer ${bob}` } })).json()) as { access_token: string };
    const records = stack.emulator.exchangeLog.filter((r) => r.sessionName === 'bob');
    assert.equal(records.length, 2, 'one token for the proxy, one for the browser');
    const proxied = records.find((r) => r.accessToken !== vended.access_token);
    const handed = records.find((r) => r.accessToken === vended.access_token);
    assert.deepEqual(handed?.scope, scopeOf(['Connector.botChat'], ['bot-ok', 'bot-two']));
    assert.deepEqual(proxied?.scope, scopeOf(['Connector.botChat', 'Connector.botVoice'], ['bot-ok', 'bot-two']));
    assert.equal(stack.emulator.sessionForToken(vended.access_token), 'bob', 'same session');
  });

  it('the emulator enforces a channel token\'s bot list as Coze does (the gateway never sends it elsewhere)', async () => {
    const record = stack.emulator.exchangeLog.find((r) => r.sessionName === 'alice');
    const direct = await fetch(`${stack.emulator.url}/v3/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${record?.accessToken ?? ''}`, 'content-type': 'application/json' },
      body: JSON.stringify({ bot_id: 'bot-three', user_id: 'alice', stream: false, additional_messages: [] }),
    });
    const body = (await direct.json()) as { code: number; msg: string };
    assert.equal(body.code, 4101);
    assert.match(body.msg, /scope does not include bot bot-three/);
  });
});
