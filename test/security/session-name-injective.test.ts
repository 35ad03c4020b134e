import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { assertEnvelope, request } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';

const HMAC_SECRET = 'a-session-name-secret-of-32-bytes!!';
const json = (token: string) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });
const seenByCoze = (stack: Stack) => stack.emulator.requests.length + stack.emulator.tokenRequests;

/**
 * Coze keeps end users apart by session_name alone. session.template was rendered by plain
 * concatenation, with a missing or non-string claim as '': tenant "acme" + subject "ops:bob" and
 * tenant "acme:ops" + subject "bob" were one session (one could read the other's conversations),
 * and with HMAC on, org ["a"], org {id: "b"} and no org at all hashed alike.
 */
describe('session-name-injective: identities that rendered one session_name get two, or a refusal', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ env: { SESSION_NAME_TEMPLATE: '{claims.tenant}:{subject}', COZE_CUSTOM_CONSUMER: 'c-{claims.tenant}:{subject}' } });
  });
  after(() => stack.close());

  it('tenant acme + ops:bob and tenant acme:ops + bob are two Coze sessions (and custom_consumers): one cannot read the other', async () => {
    const first = json(await stack.callerToken('ops:bob', { tenant: 'acme' }));
    const second = json(await stack.callerToken('bob', { tenant: 'acme:ops' }));
    const created = await request(stack.url, { method: 'POST', path: '/v1/conversation/create', headers: first, body: '{"bot_id":"b"}' });
    assert.equal(created.status, 200, created.body);
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, 'acme:ops:bob');
    const conversationId = (JSON.parse(created.body) as { data: { id: string } }).data.id;
    const read = await request(stack.url, { method: 'POST', path: `/v1/conversation/message/list?conversation_id=${conversationId}`, headers: second, body: '{}' });
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, 'acme%3Aops:bob');
    assert.equal((JSON.parse(read.body) as { code: number }).code, 4101, "tenant acme:ops's bob cannot read tenant acme's ops:bob's conversation");
    const consumers = new Map(stack.emulator.exchangeLog.map((r) => [r.sessionName, JSON.stringify(r.sessionContext)]));
    assert.equal(consumers.get('acme:ops:bob'), JSON.stringify({ device_info: { custom_consumer: 'c-acme:ops:bob' } }));
    assert.equal(consumers.get('acme%3Aops:bob'), JSON.stringify({ device_info: { custom_consumer: 'c-acme%3Aops:bob' } }));
  });

  it('a caller without the claim, or with a number, gets 400 bad-session-name naming the claim, before Coze', async () => {
    const before = seenByCoze(stack);
    for (const [claims, kind] of [[{}, 'missing'], [{ tenant: 5 }, 'a number'], [{ tenant: ['acme'] }, 'an array']] as const) {
      const res = await request(stack.url, { path: '/v1/bots/b', headers: json(await stack.callerToken('bob', claims)) });
      assertEnvelope(res, 400, 'bad-session-name');
      assert.equal(res.json().code, 400004);
      assert.equal(
        res.json().msg,
        `The caller identity maps to an invalid session_name (it must be 1 to 128 printable ASCII characters). Check the identity claims and session.template: each claim it names must be a string. The caller's {claims.tenant} is ${kind}.`,
      );
    }
    assert.equal(seenByCoze(stack), before, 'nothing reached Coze');
  });
});

describe('session-name-injective with HMAC: claims that hashed alike are refused', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ env: { SESSION_NAME_TEMPLATE: '{claims.org}/{subject}', SESSION_NAME_HMAC_SECRET: HMAC_SECRET } });
  });
  after(() => stack.close());

  it('org ["a"], org {id: "b"} and no org get 400; org "a" gets the keyed hash of a/7', async () => {
    const before = seenByCoze(stack);
    for (const claims of [{ org: ['a'] }, { org: { id: 'b' } }, {}]) {
      assertEnvelope(await request(stack.url, { path: '/v1/bots/b', headers: json(await stack.callerToken('7', claims)) }), 400, 'bad-session-name');
    }
    assert.equal(seenByCoze(stack), before, 'nothing reached Coze');
    const res = await request(stack.url, { path: '/v1/bots/b', headers: json(await stack.callerToken('7', { org: 'a' })) });
    assert.equal(res.status, 200, res.body);
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, createHmac('sha256', HMAC_SECRET).update('a/7').digest('base64url'));
  });
});
