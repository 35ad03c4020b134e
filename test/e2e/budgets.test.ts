import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createFakeClock } from '../helpers/clock.js';
import { assertEnvelope, request as raw } from '../helpers/http.js';
import { metric } from '../helpers/replicas.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { nextEvent, openWebSocket, refusedUpgrade } from '../helpers/websocket.js';

const chat = (url: string, jwt: string, question: string) =>
  raw(url, {
    method: 'POST',
    path: '/v3/chat',
    headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
    body: JSON.stringify({ bot_id: 'bot-ok', stream: true, additional_messages: [{ role: 'user', content: question, content_type: 'text' }] }),
  });
const get = (url: string, jwt: string, path: string) => raw(url, { path, headers: { authorization: `Bearer ${jwt}` } });

/** 14:00 on 10 March 2026 in Shanghai (UTC+8, no DST): 10 hours before the local midnight. */
const SHANGHAI_AFTERNOON = Date.UTC(2026, 2, 10, 6, 0, 0);

describe('budgets: a daily token budget crossed mid-day in the configured time zone', () => {
  const clock = createFakeClock(SHANGHAI_AFTERNOON);
  let stack: Stack;

  before(async () => {
    // "hello there" / "Echo: hello there" is 11 + 17 = 28 tokens with the emulator's counts.
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', BUDGET_TOKENS_PER_DAY: '50', BUDGET_TIME_ZONE: 'Asia/Shanghai' }, gatewayDeps: { usageNow: clock.now } });
  });
  after(() => stack.close());

  it('refuses the user over budget with 429 in the Coze envelope, reset time and Retry-After, before anything reaches Coze, while another user keeps working', async () => {
    const alice = await stack.callerToken('alice');
    const bob = await stack.callerToken('bob');
    assert.equal((await chat(stack.url, alice, 'hello there')).status, 200);
    clock.advance(3_600_000);
    // 28 tokens of 50: still under, so the next chat runs, and takes her over.
    assert.equal((await chat(stack.url, alice, 'hello there')).status, 200);
    clock.advance(3_600_000);

    stack.emulator.reset();
    const refused = await chat(stack.url, alice, 'hello there');
    assertEnvelope(refused, 429, 'budget-exceeded');
    const body = JSON.parse(refused.body) as { code: number; msg: string; detail: { budget: string; limit: number; reset_at: string; reset_at_unix: number; logid: string } };
    assert.equal(body.code, 429003);
    assert.match(body.msg, /^This identity has used up its usage budget\. .*The daily token budget of this identity \(50 tokens\) is used up; it resets at 2026-03-11T00:00:00\+08:00 \(Asia\/Shanghai\)\.$/);
    assert.deepEqual({ budget: body.detail.budget, limit: body.detail.limit, reset_at: body.detail.reset_at, reset_at_unix: body.detail.reset_at_unix }, {
      budget: 'tokensPerDay',
      limit: 50,
      reset_at: '2026-03-11T00:00:00+08:00',
      reset_at_unix: Date.UTC(2026, 2, 10, 16, 0, 0) / 1000,
    });
    // 16:00 local: eight hours to the local midnight.
    assert.equal(refused.headers['retry-after'], String(8 * 3600));
    assert.equal(stack.emulator.requests.length + stack.emulator.tokenRequests, 0, 'nothing reached Coze');

    // The realtime socket is refused at the upgrade, the same way.
    const upgrade = await refusedUpgrade(`${stack.url.replace('http', 'ws')}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${alice}` });
    assert.equal(upgrade.status, 429);
    assert.equal(upgrade.gatewayError, 'budget-exceeded');
    assert.equal(stack.emulator.websockets.length, 0);

    // Bob, same gateway, same day: unaffected.
    assert.equal((await chat(stack.url, bob, 'hello there')).status, 200);
    // Alice can still read what she has (no tokens spent there) and see her own figures.
    assert.equal((await get(stack.url, alice, '/v1/conversations?bot_id=bot-ok')).status, 200);
    const usage = JSON.parse((await get(stack.url, alice, '/gateway/usage')).body) as { day: { total_tokens: number; remaining: { total_tokens: number }; resets_at: string } };
    assert.equal(usage.day.total_tokens, 56);
    assert.equal(usage.day.remaining.total_tokens, 0);
    assert.equal(usage.day.resets_at, '2026-03-11T00:00:00+08:00');

    assert.equal(await metric(stack.gateway, 'budget_refusals_total'), 2);
    const text = await stack.gateway.metrics.registry.metrics();
    assert.match(text, /coze_gateway_budget_refusals_total\{window="day",budget="tokens"\} 2/);
    assert.doesNotMatch(text, /alice/);
  });

  it('lets her in again at the local midnight, not at the UTC one', async () => {
    const alice = await stack.callerToken('alice');
    // 23:59:59 in Shanghai (15:59:59 UTC): still the same local day.
    clock.set(Date.UTC(2026, 2, 10, 15, 59, 59));
    const late = await chat(stack.url, alice, 'hello there');
    assertEnvelope(late, 429, 'budget-exceeded');
    assert.equal(late.headers['retry-after'], '1');
    clock.set(Date.UTC(2026, 2, 10, 16, 0, 0));
    assert.equal((await chat(stack.url, alice, 'hello there')).status, 200);
    const usage = JSON.parse((await get(stack.url, alice, '/gateway/usage')).body) as { day: { window: string; total_tokens: number }; month: { window: string; total_tokens: number } };
    assert.equal(usage.day.window, '2026-03-11');
    assert.equal(usage.day.total_tokens, 28);
    assert.equal(usage.month.window, '2026-03');
    assert.equal(usage.month.total_tokens, 84, 'the month keeps counting across days');
  });

  it('never cuts a running realtime socket for budget: its chats go on past the budget; only new ones are refused', async () => {
    const carol = await stack.callerToken('carol');
    const ws = await openWebSocket(`${stack.url.replace('http', 'ws')}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${carol}` });
    for (let i = 0; i < 3; i++) {
      ws.send(JSON.stringify({ id: String(i), event_type: 'conversation.message.create', data: { role: 'user', content_type: 'text', content: 'hello there' } }));
      await nextEvent(ws, 'conversation.chat.completed');
    }
    assert.equal(ws.readyState, ws.OPEN, 'the socket is still open at 84 tokens of 50');
    const usage = JSON.parse((await get(stack.url, carol, '/gateway/usage')).body) as { day: { total_tokens: number } };
    assert.equal(usage.day.total_tokens, 84);
    assertEnvelope(await chat(stack.url, carol, 'hello there'), 429, 'budget-exceeded');
    ws.close();
  });
});

describe('budgets: per-subject overrides from a file, reloaded when it changes', () => {
  let dir: string;
  let file: string;
  let stack: Stack;

  const write = (text: string) => {
    // Written aside and renamed, as editors and Kubernetes do: never a half-written file.
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  async function until(check: () => Promise<boolean>, what: string): Promise<void> {
    // The file watcher fires within milliseconds; the 5 s poll is the fallback.
    for (let i = 0; i < 400; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.fail(what);
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'csg-budgets-'));
    file = join(dir, 'budgets.yaml');
    write('- subject: dave\n  requestsPerDay: 2\n- subject: erin\n  tokensPerDay: 0\n');
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', BUDGET_REQUESTS_PER_DAY: '100', BUDGET_OVERRIDES_FILE: file } });
  });
  after(async () => {
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("applies a subject's override in place of the global budget", async () => {
    const dave = await stack.callerToken('dave');
    const erin = await stack.callerToken('erin');
    assert.equal((await get(stack.url, dave, '/v1/conversations?bot_id=bot-ok')).status, 200);
    assert.equal((await get(stack.url, dave, '/v1/conversations?bot_id=bot-ok')).status, 200);
    const third = await get(stack.url, dave, '/v1/conversations?bot_id=bot-ok');
    assertEnvelope(third, 429, 'budget-exceeded');
    assert.equal((JSON.parse(third.body) as { detail: { budget: string; limit: number } }).detail.budget, 'requestsPerDay');
    assert.match(JSON.parse(third.body).msg, /daily request budget of this identity \(2 requests\)/);
    // A token budget of 0 refuses every token-spending call from the start, and nothing else.
    assertEnvelope(await chat(stack.url, erin, 'hi'), 429, 'budget-exceeded');
    assert.equal((await get(stack.url, erin, '/v1/conversations?bot_id=bot-ok')).status, 200);
    const usage = JSON.parse((await get(stack.url, dave, '/gateway/usage')).body) as { day: { budget: { requests: number }; remaining: { requests: number } } };
    assert.deepEqual([usage.day.budget.requests, usage.day.remaining.requests], [2, 0]);
  });

  it('takes a changed file into force without a restart, and keeps the last good one when the new one is broken', async () => {
    const dave = await stack.callerToken('dave');
    write('- subject: dave\n  requestsPerDay: unlimited\n');
    await until(async () => (await get(stack.url, dave, '/v1/conversations?bot_id=bot-ok')).status === 200, 'the reloaded file lifts the override');
    assert.equal(await metric(stack.gateway, 'budget_override_reloads_total'), 1);

    write('- subject: dave\n  requestsPerDay: lots\n');
    await until(async () => stack.logs.some((l) => l.includes('budgets.overridesFile is invalid')), 'the broken file is reported');
    const line = stack.logs.find((l) => l.includes('budgets.overridesFile is invalid')) as string;
    assert.match(line, /entry 0\.requestsPerDay/);
    assert.equal((await get(stack.url, dave, '/v1/conversations?bot_id=bot-ok')).status, 200, 'the last good version stays in force');
    const text = await stack.gateway.metrics.registry.metrics();
    assert.match(text, /coze_gateway_budget_override_reloads_total\{outcome="error"\} 1/);
  });
});

describe('budgets: a request the gateway refuses or cannot forward is not counted', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', BUDGET_REQUESTS_PER_DAY: '1' } });
  });
  after(() => stack.close());

  it('wrong-transport-not-counted: a plain GET to a WebSocket endpoint and an upgrade on an HTTP route get 403, and the one request of the day is still there', async () => {
    const carol = await stack.callerToken('carol');
    const plain = await get(stack.url, carol, '/v1/chat?bot_id=bot-ok');
    assertEnvelope(plain, 403, 'route-forbidden');
    assert.match(plain.body, /WebSocket upgrades only/);
    const upgrade = await refusedUpgrade(`${stack.url.replace('http', 'ws')}/v1/conversations?bot_id=bot-ok`, { authorization: `Bearer ${carol}` });
    assert.equal(upgrade.status, 403);
    assert.equal(upgrade.gatewayError, 'route-forbidden');
    assert.equal((await get(stack.url, carol, '/v1/conversations?bot_id=bot-ok')).status, 200, 'the day budget of one request was not spent by the refusals');
    assertEnvelope(await get(stack.url, carol, '/v1/conversations?bot_id=bot-ok'), 429, 'budget-exceeded');
  });

  it('mint-failure-not-counted: a request and an upgrade whose Coze token cannot be minted get 502 token-mint-failed, and their day budget is still whole', async () => {
    const requestsOf = async (jwt: string) => {
      const { day } = JSON.parse((await get(stack.url, jwt, '/gateway/usage')).body) as { day: { requests: number; remaining: { requests: number } } };
      return { requests: day.requests, remaining: { requests: day.remaining.requests } };
    };
    const dave = await stack.callerToken('dave');
    stack.emulator.setTokenFault({ kind: 'error-code', errorCode: 'invalid_request', times: 1 });
    assertEnvelope(await get(stack.url, dave, '/v1/conversations?bot_id=bot-ok'), 502, 'token-mint-failed');
    assert.deepEqual(await requestsOf(dave), { requests: 0, remaining: { requests: 1 } }, 'an HTTP request that never reached Coze');

    const erin = await stack.callerToken('erin');
    stack.emulator.setTokenFault({ kind: 'error-code', errorCode: 'invalid_request', times: 1 });
    const upgrade = await refusedUpgrade(`${stack.url.replace('http', 'ws')}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${erin}` });
    assert.equal(upgrade.status, 502);
    assert.equal(upgrade.gatewayError, 'token-mint-failed');
    assert.equal(stack.emulator.websockets.length, 0);
    assert.deepEqual(await requestsOf(erin), { requests: 0, remaining: { requests: 1 } }, 'an upgrade that never reached Coze');
  });
});
