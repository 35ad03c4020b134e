import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { redisMissing, useRedisServer } from '../helpers/redis.js';
import type { ReplicaLike } from '../helpers/replicas.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { until as waitUntil } from '../helpers/websocket.js';

/**
 * Chats nobody follows to their end through the gateway are followed up by it (budgets.followUp,
 * docs/usage-and-budgets.md). The follow-up delay is tiny here; the tests wait for its outcome
 * in the metrics, never for time.
 */

// 'hello there' is 11 tokens in, 'Echo: hello there' 17 out: 28 with the emulator's counts.
const QUESTION = [{ role: 'user', content: 'hello there', content_type: 'text' }];
const TOKENS = { input: 11, output: 17, total: 28 };

const post = (url: string, path: string, jwt: string, body: unknown) =>
  fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function startChat(url: string, jwt: string, botId = 'bot-ok'): Promise<{ id: string; conversation_id: string; status: string }> {
  const res = await post(url, '/v3/chat', jwt, { bot_id: botId, user_id: 'u', stream: false, additional_messages: QUESTION });
  assert.equal(res.status, 200);
  const { data } = (await res.json()) as { data: { id: string; conversation_id: string; status: string } };
  assert.equal(data.status, 'in_progress', 'Coze answers a non-streaming chat at once, still running');
  return data;
}

async function usageOf(url: string, jwt: string): Promise<{ shared: boolean; day: { input_tokens: number; output_tokens: number; total_tokens: number } }> {
  const res = await fetch(`${url}/gateway/usage`, { headers: { authorization: `Bearer ${jwt}` } });
  assert.equal(res.status, 200);
  return (await res.json()) as { shared: boolean; day: { input_tokens: number; output_tokens: number; total_tokens: number } };
}

/** coze_gateway_usage_follow_ups_total{outcome} of one gateway. */
async function followUps(replica: ReplicaLike, outcome: string): Promise<number> {
  const text = await replica.gateway.metrics.registry.metrics();
  return Number(new RegExp(`^coze_gateway_usage_follow_ups_total\\{outcome="${outcome}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
}

/** Follow-ups back off between retrieves: a wait may take a few of them on a busy machine. */
const until = (check: () => Promise<boolean>, what: string) => waitUntil(check, what, 10_000);

/** The retrieves of one chat the emulator (Coze) received, from anyone. */
const retrievesOf = (stack: Stack, chatId: string) => stack.emulator.requests.filter((r) => r.path === '/v3/chat/retrieve' && r.query.chat_id === chatId).length;

describe('usage of chats nobody follows to their end', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', BUDGET_TOKENS_PER_DAY: '20', BUDGET_FOLLOW_UP_DELAY_MS: '20' } });
  });
  after(() => stack.close());

  it('usage-follow-up-unretrieved-chat: a stream:false chat its client never retrieves is counted, and the token budget then refuses with 429003', async () => {
    const jwt = await stack.callerToken('never-looks');
    const chat = await startChat(stack.url, jwt);
    await until(async () => (await followUps(stack, 'counted')) >= 1, 'the gateway retrieved the chat and counted it');
    const usage = await usageOf(stack.url, jwt);
    assert.deepEqual([usage.day.input_tokens, usage.day.output_tokens, usage.day.total_tokens], [TOKENS.input, TOKENS.output, TOKENS.total]);
    // The emulator's chat ends on its second retrieve, as Coze's ends after a while: one retry.
    assert.equal(retrievesOf(stack, chat.id), 2, 'retrieved until it ended, then no more');
    assert.ok((await followUps(stack, 'retried')) >= 1);
    const recorded = stack.emulator.requests.find((r) => r.query.chat_id === chat.id);
    assert.equal(recorded?.method, 'GET');
    assert.equal(recorded?.query.conversation_id, chat.conversation_id);
    assert.ok(recorded?.sessionName?.includes('never-looks'), 'with the session\'s own token');

    const refused = await post(stack.url, '/v3/chat', jwt, { bot_id: 'bot-ok', user_id: 'u', stream: false, additional_messages: QUESTION });
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('x-gateway-error'), 'budget-exceeded');
    const body = (await refused.json()) as { code: number; msg: string };
    assert.equal(body.code, 429003);
    assert.match(body.msg, /^This identity has used up its usage budget\..*The daily token budget of this identity \(20 tokens\) is used up/);
  });

  it('usage-follow-up-cut-stream: a chat stream the client cuts after conversation.chat.created is counted', async () => {
    const jwt = await stack.callerToken('drops-streams');
    const pacer = stack.emulator.pace();
    try {
      const first = await new Promise<string>((resolve, reject) => {
        const req = http.request(`${stack.url}/v3/chat`, { method: 'POST', headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' } }, (res) => {
          res.once('data', (chunk: Buffer) => {
            // Cut by the client once the chat has started: its end never passes the gateway.
            req.destroy();
            resolve(chunk.toString('utf8'));
          });
        });
        req.on('error', () => undefined);
        req.end(JSON.stringify({ bot_id: 'bot-ok', user_id: 'u', stream: true, additional_messages: QUESTION }));
        req.on('response', (res) => res.once('end', () => reject(new Error('the stream ended before the client cut it'))));
        pacer.release(1);
      });
      assert.match(first, /^event:conversation\.chat\.created\n/);
      // Coze stays held until the gateway has given the request up: the chat's end is never read.
      await until(async () => stack.logs.some((l) => l.includes('"route":"chat"') && l.includes('"status":499')), 'the gateway saw the client leave');
    } finally {
      stack.emulator.unpace();
    }
    await until(async () => (await usageOf(stack.url, jwt)).day.total_tokens === TOKENS.total, 'its tokens are counted');
  });

  it('usage-follow-up-polled-chat: a chat the client polls to its end through the gateway costs no retrieve of the gateway and counts once', async () => {
    // A replica whose follow-up could not come before the client's polls: the count must drop it.
    const replica = await stack.replica({ BUDGET_FOLLOW_UP_DELAY_MS: '600000' });
    const jwt = await stack.callerToken('polls-to-the-end');
    const chat = await startChat(replica.url, jwt);
    assert.equal(replica.gateway.usage.followUps?.pending, 1, 'followed up unless the client follows it');
    let polls = 0;
    for (let status = chat.status; status !== 'completed'; polls++) {
      const res = await fetch(`${replica.url}/v3/chat/retrieve?conversation_id=${chat.conversation_id}&chat_id=${chat.id}`, { headers: { authorization: `Bearer ${jwt}` } });
      status = ((await res.json()) as { data: { status: string } }).data.status;
    }
    assert.equal(replica.gateway.usage.followUps?.pending, 0, 'counted: nothing left to follow up');
    assert.equal(await followUps(replica, 'followed'), 1);
    assert.equal(retrievesOf(stack, chat.id), polls, 'only the client retrieved it');
    assert.equal((await usageOf(replica.url, jwt)).day.total_tokens, TOKENS.total, 'counted once');
    await replica.close();
  });
});

describe('a chat given up while waiting for tool outputs', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      env: { ALLOWED_BOT_IDS: 'bot-tool', BUDGET_TOKENS_PER_DAY: '20', BUDGET_FOLLOW_UP_DELAY_MS: '10', BUDGET_FOLLOW_UP_MAX_AGE_MS: '200' },
      emulator: { bots: { 'bot-tool': 'tool' } },
    });
  });
  after(() => stack.close());

  it('usage-follow-up-abandoned-then-completed-counts-the-rest: tool outputs sent after max age still count the chat\'s end, and the budget then refuses', async () => {
    const jwt = await stack.callerToken('waits-out-max-age');
    const started = await (await post(stack.url, '/v3/chat', jwt, { bot_id: 'bot-tool', user_id: 'u', stream: true, additional_messages: QUESTION })).text();
    assert.match(started, /event:conversation\.chat\.requires_action\n/);
    const [, chatId, conversationId] = /"id":"([^"]+)","conversation_id":"([^"]+)"/.exec(started) ?? [];
    const toolCallId = /"tool_calls":\[\{"id":"([^"]+)"/.exec(started)?.[1];
    assert.ok(chatId && conversationId && toolCallId);
    await until(async () => (await followUps(stack, 'abandoned')) === 1, 'the chat was given up as abandoned');

    const finished = await post(stack.url, `/v3/chat/submit_tool_outputs?conversation_id=${conversationId}&chat_id=${chatId}`, jwt, { stream: true, tool_outputs: [{ tool_call_id: toolCallId, output: 'a long tool answer' }] });
    const text = await finished.text();
    const usage = JSON.parse(/event:conversation\.chat\.completed\ndata:(.*)\n/.exec(text)?.[1] ?? '{}').usage as { token_count: number };
    assert.ok(usage.token_count > 20, `Coze reported the chat's whole usage at its end (${usage.token_count})`);
    assert.equal((await usageOf(stack.url, jwt)).day.total_tokens, usage.token_count, 'its end is counted, not lost to the abandoned count');
    const refused = await post(stack.url, '/v3/chat', jwt, { bot_id: 'bot-tool', user_id: 'u', stream: false, additional_messages: QUESTION });
    assert.equal(refused.status, 429);
    assert.equal(((await refused.json()) as { code: number }).code, 429003);
  });
});

describe('a chat that never ends is given up', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      env: { ALLOWED_BOT_IDS: 'bot-ok', BUDGET_FOLLOW_UP_DELAY_MS: '10', BUDGET_FOLLOW_UP_MAX_AGE_MS: '300' },
      // Chats that run for as long as anyone cares to look.
      emulator: { retrievesBeforeCompletion: 1_000_000 },
    });
  });
  after(() => stack.close());

  it('usage-follow-up-gives-up: a chat still running is retried with backoff, then given up at max age', async () => {
    const jwt = await stack.callerToken('slow-chat');
    const chat = await startChat(stack.url, jwt);
    await until(async () => (await followUps(stack, 'expired')) === 1, 'given up');
    const retried = await followUps(stack, 'retried');
    assert.ok(retried >= 1, 'retried before giving up');
    assert.equal(retrievesOf(stack, chat.id), retried + 1, 'one retrieve per attempt, none after giving up');
    assert.equal(stack.gateway.usage.followUps?.pending, 0);
    assert.equal((await usageOf(stack.url, jwt)).day.total_tokens, 0, 'nothing reported, nothing counted');
  });
});

describe('usage of a followed-up chat across replicas through Redis', { skip: redisMissing }, () => {
  const redis = useRedisServer();
  let stack: Stack;
  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', REDIS_URL: redis.url, CACHE_ENCRYPTION_KEY: randomBytes(32).toString('base64'), CACHE_COMMAND_TIMEOUT_MS: '2000', BUDGET_SYNC_INTERVAL_MS: '50', BUDGET_FOLLOW_UP_DELAY_MS: '20' } });
  });
  after(() => stack.close());

  it('usage-follow-up-across-replicas: a chat followed up by one replica and retrieved by the client through another counts once', async () => {
    const other = await stack.replica({ BUDGET_FOLLOW_UP_DELAY_MS: '600000' });
    const jwt = await stack.callerToken('two-replicas');
    const chat = await startChat(stack.url, jwt);
    await until(async () => (await followUps(stack, 'counted')) === 1, 'followed up and counted by the first replica');
    const res = await fetch(`${other.url}/v3/chat/retrieve?conversation_id=${chat.conversation_id}&chat_id=${chat.id}`, { headers: { authorization: `Bearer ${jwt}` } });
    assert.equal(((await res.json()) as { data: { status: string } }).data.status, 'completed');
    // The second replica counted it too, then took its count back when its claim found the id taken.
    await until(async () => {
      await Promise.all([stack.gateway.usage.counter.flush(), other.gateway.usage.counter.flush()]);
      const [a, b] = await Promise.all([usageOf(stack.url, jwt), usageOf(other.url, jwt)]);
      return a.shared && b.shared && a.day.total_tokens === TOKENS.total && b.day.total_tokens === TOKENS.total;
    }, 'both replicas see the chat counted once');
    assert.equal(other.gateway.usage.followUps?.pending, 0);
    await other.close();
  });
});
