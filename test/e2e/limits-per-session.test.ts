import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { assertEnvelope, request as raw } from '../helpers/http.js';
import { CALLER_AUDIENCE, startStack, type Stack } from '../helpers/stack.js';
import { openWebSocket, refusedUpgrade } from '../helpers/websocket.js';

/**
 * Found by review: per-caller limits, budgets and usage were keyed by the identity's source and
 * subject, so callers that session.template tells apart ("admin" of tenant A and "admin" of
 * tenant B: two Coze sessions) shared them. One could use up the other's budget, rate limit and
 * concurrency slots, and GET /gateway/usage showed each the other's figures. They are now the
 * session_name's: two callers share limits exactly when they share a Coze session.
 */

const TENANT_A = 'https://tenant-a.example';
const TENANT_B = 'https://tenant-b.example';

const headers = (jwt: string) => ({ authorization: `Bearer ${jwt}`, 'content-type': 'application/json' });
const chat = (url: string, jwt: string) =>
  raw(url, {
    method: 'POST',
    path: '/v3/chat',
    headers: headers(jwt),
    body: JSON.stringify({ bot_id: 'bot-ok', stream: true, additional_messages: [{ role: 'user', content: 'hello there', content_type: 'text' }] }),
  });
const list = (url: string, jwt: string) => raw(url, { path: '/v1/conversations?bot_id=bot-ok', headers: headers(jwt) });
const vend = (url: string, jwt: string) => raw(url, { method: 'POST', path: '/gateway/token', headers: headers(jwt) });

interface UsageAnswer {
  session_name: string;
  day: { requests: number; total_tokens: number; remaining: { requests: number } };
}
const usage = async (url: string, jwt: string) => JSON.parse((await raw(url, { path: '/gateway/usage', headers: headers(jwt) })).body) as UsageAnswer;

/** A caller JWT from either issuer (both trust the stack's signing key). */
const tokenFrom = (stack: Stack, issuer: string, subject: string, claims: Record<string, unknown> = {}) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT' }).setSubject(subject).setIssuer(issuer).setAudience(CALLER_AUDIENCE).setIssuedAt().setExpirationTime('1h').sign(stack.callerKey);

const TWO_ISSUERS = { IDENTITY_JWT_ISSUER: `${TENANT_A},${TENANT_B}`, SESSION_NAME_TEMPLATE: '{issuer}|{subject}' };

const SETUPS = [
  {
    what: 'two issuers, {issuer} in the template',
    env: TWO_ISSUERS,
    admin: (stack: Stack, tenant: 'a' | 'b') => tokenFrom(stack, tenant === 'a' ? TENANT_A : TENANT_B, 'admin'),
  },
  {
    what: 'one issuer, {claims.tenant} in the template, a prefix and an HMAC',
    env: { SESSION_NAME_TEMPLATE: '{claims.tenant}/{subject}', SESSION_NAME_PREFIX: 'prod-', SESSION_NAME_HMAC_SECRET: 'h'.repeat(32) },
    admin: (stack: Stack, tenant: 'a' | 'b') => stack.callerToken('admin', { tenant }),
  },
];

for (const setup of SETUPS) {
  describe(`limits-per-session: budgets and usage (${setup.what})`, () => {
    let stack: Stack;
    before(async () => {
      stack = await startStack({ env: { ...setup.env, ALLOWED_BOT_IDS: 'bot-ok', BUDGET_REQUESTS_PER_DAY: '2', TOKEN_VENDING_ENABLED: 'true' } });
    });
    after(() => stack.close());

    it('one session using up its daily requests leaves the same subject in another session its own budget and figures', async () => {
      const adminA = await setup.admin(stack, 'a');
      const adminB = await setup.admin(stack, 'b');
      assert.equal((await chat(stack.url, adminA)).status, 200);
      assert.equal((await list(stack.url, adminA)).status, 200);
      const sessions = new Set(stack.emulator.requests.map((r) => r.sessionName));
      assert.equal(sessions.size, 1);

      // A fresh token for the same session shares its budget: the key is the session, not the token.
      const refused = await list(stack.url, await setup.admin(stack, 'a'));
      assertEnvelope(refused, 429, 'budget-exceeded');
      assertEnvelope(await vend(stack.url, adminA), 429, 'budget-exceeded');

      const b = await usage(stack.url, adminB);
      assert.deepEqual([b.day.requests, b.day.total_tokens, b.day.remaining.requests], [0, 0, 2], "tenant B's admin sees none of tenant A's figures");
      assert.equal((await vend(stack.url, adminB)).status, 200);
      assert.equal((await list(stack.url, adminB)).status, 200);
      assert.equal((await chat(stack.url, adminB)).status, 200);
      assertEnvelope(await list(stack.url, adminB), 429, 'budget-exceeded');
      for (const r of stack.emulator.requests) sessions.add(r.sessionName);
      assert.equal(sessions.size, 2, 'two Coze sessions');

      // "hello there" / "Echo: hello there" is 28 tokens with the emulator's counts: one chat each.
      const a = await usage(stack.url, adminA);
      assert.deepEqual([a.day.requests, a.day.total_tokens, a.day.remaining.requests], [2, 28, 0]);
      const bAfter = await usage(stack.url, adminB);
      assert.deepEqual([bAfter.day.requests, bAfter.day.total_tokens, bAfter.day.remaining.requests], [2, 28, 0]);
      assert.ok(a.session_name && bAfter.session_name && a.session_name !== bAfter.session_name, 'each answer names the session it counts');
    });
  });
}

describe('limits-per-session: rate limit and concurrency (two issuers)', () => {
  let rated: Stack;
  let capped: Stack;
  before(async () => {
    rated = await startStack({ env: { ...TWO_ISSUERS, ALLOWED_BOT_IDS: 'bot-ok', RATE_LIMIT_RPM: '2' } });
    capped = await startStack({ env: { ...TWO_ISSUERS, ALLOWED_BOT_IDS: 'bot-ok', RATE_LIMIT_MAX_CONCURRENT: '1' } });
  });
  after(async () => {
    await rated?.close();
    await capped?.close();
  });

  it("one session over its rate limit does not hold back the same subject's other session", async () => {
    const adminA = await tokenFrom(rated, TENANT_A, 'admin');
    const adminB = await tokenFrom(rated, TENANT_B, 'admin');
    assert.equal((await list(rated.url, adminA)).status, 200);
    assert.equal((await list(rated.url, adminA)).status, 200);
    assertEnvelope(await list(rated.url, adminA), 429, 'rate-limited');
    assert.equal((await list(rated.url, adminB)).status, 200);
    assert.equal((await list(rated.url, adminB)).status, 200);
    assertEnvelope(await list(rated.url, adminB), 429, 'rate-limited');
  });

  it("a socket holding one session's only slot leaves the same subject's other session free", async () => {
    const adminA = await tokenFrom(capped, TENANT_A, 'admin');
    const adminB = await tokenFrom(capped, TENANT_B, 'admin');
    const ws = capped.url.replace('http', 'ws');
    const socketA = await openWebSocket(`${ws}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${adminA}` });
    try {
      const second = await refusedUpgrade(`${ws}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${adminA}` });
      assert.deepEqual([second.status, second.gatewayError], [429, 'too-many-concurrent']);
      const socketB = await openWebSocket(`${ws}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${adminB}` });
      assert.equal(socketB.readyState, socketB.OPEN);
      socketB.close();
    } finally {
      socketA.close();
    }
  });
});
