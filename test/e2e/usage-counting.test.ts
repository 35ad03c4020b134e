import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { metric } from '../helpers/replicas.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { nextEvent, openWebSocket, until } from '../helpers/websocket.js';

interface UsageAnswer {
  identity: { source: string; subject: string };
  time_zone: string;
  shared: boolean;
  day: { window: string; requests: number; input_tokens: number; output_tokens: number; total_tokens: number; resets_at: string; budget: { total_tokens: number | null; requests: number | null }; remaining: { total_tokens: number | null; requests: number | null } };
  month: { window: string; total_tokens: number };
}
interface CozeUsage {
  token_count: number;
  output_count: number;
  input_count: number;
}

/** GET /gateway/usage as `jwt`. */
async function usageOf(url: string, jwt: string): Promise<UsageAnswer> {
  const res = await fetch(`${url}/gateway/usage`, { headers: { authorization: `Bearer ${jwt}` } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  return (await res.json()) as UsageAnswer;
}

const post = (url: string, path: string, jwt: string, body: unknown) =>
  fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** The usage objects of an SSE body's events named `event` (chat framing or workflow framing). */
function usagesIn(sse: string, event: string): CozeUsage[] {
  const out: CozeUsage[] = [];
  for (const block of sse.split(/\n\n/)) {
    const name = /^event: ?(.*)$/m.exec(block)?.[1];
    const data = /^data: ?(.*)$/m.exec(block)?.[1];
    if (name !== event || !data) continue;
    const usage = (JSON.parse(data) as { usage?: CozeUsage }).usage;
    if (usage) out.push(usage);
  }
  return out;
}

/** Adds up what the client itself saw Coze report. */
const sum = (list: CozeUsage[]) => list.reduce((t, u) => ({ input: t.input + u.input_count, output: t.output + u.output_count, total: t.total + u.token_count }), { input: 0, output: 0, total: 0 });

async function assertCounted(stack: Stack, jwt: string, before: UsageAnswer, expected: { input: number; output: number; total: number }, requests: number): Promise<UsageAnswer> {
  const now = await usageOf(stack.url, jwt);
  assert.ok(expected.total > 0, 'the emulator reported usage');
  assert.equal(now.day.input_tokens - before.day.input_tokens, expected.input, 'input tokens as Coze reported them');
  assert.equal(now.day.output_tokens - before.day.output_tokens, expected.output, 'output tokens as Coze reported them');
  assert.equal(now.day.total_tokens - before.day.total_tokens, expected.total, 'total tokens (token_count)');
  assert.equal(now.month.total_tokens - before.month.total_tokens, expected.total, 'the month counts the same tokens');
  assert.equal(now.day.requests - before.day.requests, requests, 'requests forwarded to Coze');
  return now;
}

describe('usage counting on every framing Coze reports it in', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', BUDGET_TOKENS_PER_DAY: '1000000' }, emulator: { workflows: { 'wf-big': 'large' } } });
  });
  after(() => stack.close());

  it('non-streaming chat: the usage of the completed chat, read from chat/retrieve, counted once however often it is retrieved', async () => {
    const jwt = await stack.callerToken('json-user');
    const start = await usageOf(stack.url, jwt);
    const created = (await (await post(stack.url, '/v3/chat', jwt, { bot_id: 'bot-ok', stream: false, additional_messages: [{ role: 'user', content: 'how far is the moon', content_type: 'text' }] })).json()) as {
      data: { id: string; conversation_id: string; status: string };
    };
    assert.equal(created.data.status, 'in_progress', 'Coze answers at once; the usage comes with the retrieve that sees the chat completed');
    let usage: CozeUsage | undefined;
    let retrieves = 0;
    // Poll as the SDKs do, and twice more after completion: the same chat must not count again.
    for (let extra = 0; extra < 3; ) {
      const res = await fetch(`${stack.url}/v3/chat/retrieve?conversation_id=${created.data.conversation_id}&chat_id=${created.data.id}`, { headers: { authorization: `Bearer ${jwt}` } });
      retrieves += 1;
      const chat = ((await res.json()) as { data: { status: string; usage: CozeUsage } }).data;
      if (chat.status === 'completed') {
        usage = chat.usage;
        extra += 1;
      }
    }
    assert.ok(usage);
    await assertCounted(stack, jwt, start, sum([usage]), 1 + retrieves);
  });

  it('chat SSE: the usage of conversation.chat.completed, with the stream relayed unchanged', async () => {
    const jwt = await stack.callerToken('sse-user');
    const start = await usageOf(stack.url, jwt);
    const res = await post(stack.url, '/v3/chat', jwt, { bot_id: 'bot-ok', stream: true, additional_messages: [{ role: 'user', content: 'tell me a story', content_type: 'text' }] });
    assert.equal(res.status, 200);
    const body = await res.text();
    const usages = usagesIn(body, 'conversation.chat.completed');
    assert.equal(usages.length, 1);
    assert.ok(body.trimEnd().endsWith('data:"[DONE]"'), 'the stream ends as Coze ended it');
    await assertCounted(stack, jwt, start, sum(usages), 1);
  });

  it('realtime WebSocket: the usage of conversation.chat.completed in the downlink, every chat of the socket', async () => {
    const jwt = await stack.callerToken('ws-user');
    const start = await usageOf(stack.url, jwt);
    const ws = await openWebSocket(`${stack.url.replace('http', 'ws')}/v1/chat?bot_id=bot-ok`, { authorization: `Bearer ${jwt}` });
    const usages: CozeUsage[] = [];
    for (const question of ['first question', 'a second, longer question']) {
      ws.send(JSON.stringify({ id: question, event_type: 'conversation.message.create', data: { role: 'user', content_type: 'text', content: question } }));
      const { event } = await nextEvent(ws, 'conversation.chat.completed');
      usages.push((event.data as { usage: CozeUsage }).usage);
    }
    ws.close();
    // The socket's counts land as the events pass; the request counted once for the connection.
    await until(() => stack.logs.some((l) => l.includes('"route":"ws.chat"') && l.includes('"closeCode"')), 'the socket was logged');
    await assertCounted(stack, jwt, start, sum(usages), 1);
    const line = JSON.parse(stack.logs.find((l) => l.includes('"route":"ws.chat"') && l.includes('"closeCode"')) as string) as { tokens?: { total: number } };
    assert.equal(line.tokens?.total, sum(usages).total, 'the socket log line carries its token counts');
  });

  it('workflow run (JSON): the top-level usage of the answer', async () => {
    const jwt = await stack.callerToken('wf-user');
    const start = await usageOf(stack.url, jwt);
    const answer = (await (await post(stack.url, '/v1/workflow/run', jwt, { workflow_id: 'wf-1', parameters: {} })).json()) as { usage: CozeUsage };
    await assertCounted(stack, jwt, start, sum([answer.usage]), 1);
  });

  it('workflow run with a 64 KiB answer: the usage after the output is read as the bytes pass, the answer relayed whole', async () => {
    const jwt = await stack.callerToken('wf-big-user');
    const start = await usageOf(stack.url, jwt);
    const res = await post(stack.url, '/v1/workflow/run', jwt, { workflow_id: 'wf-big', parameters: {} });
    const text = await res.text();
    assert.ok(text.length > 65_536, 'larger than what the gateway inspects whole');
    const answer = JSON.parse(text) as { data: string; usage: CozeUsage };
    assert.ok(answer.data.length > 65_536);
    await assertCounted(stack, jwt, start, sum([answer.usage]), 1);
  });

  it('workflow stream: the usage of its Message events, counted once when the stream ends', async () => {
    const jwt = await stack.callerToken('wf-stream-user');
    const start = await usageOf(stack.url, jwt);
    const body = await (await post(stack.url, '/v1/workflow/stream_run', jwt, { workflow_id: 'wf-1', parameters: {} })).text();
    const usages = usagesIn(body, 'Message');
    assert.ok(usages.length >= 1);
    const largest = usages.reduce((a, b) => (b.token_count >= a.token_count ? b : a));
    await assertCounted(stack, jwt, start, sum([largest]), 1);
  });

  it('an async workflow run is counted from its run history once it has ended, once', async () => {
    const jwt = await stack.callerToken('wf-async-user');
    const start = await usageOf(stack.url, jwt);
    const run = (await (await post(stack.url, '/v1/workflow/run', jwt, { workflow_id: 'wf-1', parameters: {}, is_async: true })).json()) as { execute_id: string; usage?: unknown };
    assert.equal(run.usage, undefined, 'an async run reports no usage in its answer');
    let usage: CozeUsage | undefined;
    for (let i = 0; i < 2; i++) {
      const history = (await (await fetch(`${stack.url}/v1/workflows/wf-1/run_histories/${run.execute_id}`, { headers: { authorization: `Bearer ${jwt}` } })).json()) as { data: Array<{ usage: CozeUsage }> };
      usage = history.data[0]?.usage;
    }
    assert.ok(usage);
    await assertCounted(stack, jwt, start, sum([usage]), 3);
  });

  it('shows each caller only its own usage, and carries the token counts in the request log and the metrics (no per-user label)', async () => {
    const alice = await stack.callerToken('sse-user');
    const bob = await stack.callerToken('nobody-yet');
    const mine = await usageOf(stack.url, alice);
    const theirs = await usageOf(stack.url, bob);
    assert.equal(mine.identity.subject, 'sse-user');
    assert.ok(mine.day.total_tokens > 0);
    assert.equal(theirs.identity.subject, 'nobody-yet');
    assert.equal(theirs.day.total_tokens, 0, "another caller's figures are never shown");
    assert.equal(theirs.day.requests, 0);
    assert.equal(mine.time_zone, 'UTC');
    assert.equal(mine.day.budget.total_tokens, 1_000_000);
    assert.equal(mine.day.remaining.total_tokens, 1_000_000 - mine.day.total_tokens);
    assert.equal(mine.day.budget.requests, null, 'no request budget configured');

    const chatLine = stack.logs.map((l) => JSON.parse(l) as { route?: string; status?: number; tokens?: { input: number; output: number; total: number } }).find((l) => l.route === 'chat' && l.tokens);
    assert.ok(chatLine?.tokens && chatLine.tokens.total === chatLine.tokens.input + chatLine.tokens.output, 'the request log line carries input, output and total');

    const text = await stack.gateway.metrics.registry.metrics();
    assert.match(text, /coze_gateway_usage_tokens_total\{route="chat",kind="input"\} [1-9]/);
    assert.match(text, /coze_gateway_usage_tokens_total\{route="workflow.stream_run",kind="output"\} [1-9]/);
    assert.match(text, /coze_gateway_usage_tokens_total\{route="ws.chat",kind="output"\} [1-9]/);
    assert.doesNotMatch(text, /sse-user|json-user|ws-user/, 'no per-user label');
    assert.ok((await metric(stack.gateway, 'usage_tokens_total')) > 0);
  });

  it('GET /gateway/usage authenticates like any request, answers GET only, and reaches nothing upstream', async () => {
    stack.emulator.reset();
    const none = await fetch(`${stack.url}/gateway/usage`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('x-gateway-error'), 'credential-missing');
    const jwt = await stack.callerToken('json-user');
    const wrong = await fetch(`${stack.url}/gateway/usage`, { method: 'POST', headers: { authorization: `Bearer ${jwt}` } });
    assert.equal(wrong.status, 404);
    // A query cannot name somebody else.
    const asked = (await (await fetch(`${stack.url}/gateway/usage?subject=sse-user&user=sse-user`, { headers: { authorization: `Bearer ${jwt}` } })).json()) as UsageAnswer;
    assert.equal(asked.identity.subject, 'json-user');
    assert.equal(stack.emulator.requests.length + stack.emulator.tokenRequests, 0, 'the usage endpoint never calls Coze');
  });
});
