import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { assertEnvelope, request as raw } from '../helpers/http.js';
import { redisMissing, startRedis, type RedisServer } from '../helpers/redis.js';
import { metric, onRedis, type ReplicaLike } from '../helpers/replicas.js';
import type { Stack } from '../helpers/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const chat = (url: string, jwt: string) =>
  raw(url, {
    method: 'POST',
    path: '/v3/chat',
    headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
    // 11 + 17 = 28 tokens with the emulator's counts.
    body: JSON.stringify({ bot_id: 'bot-ok', stream: true, additional_messages: [{ role: 'user', content: 'hello there', content_type: 'text' }] }),
  });

interface Usage {
  shared: boolean;
  day: { total_tokens: number; requests: number };
}
/** GET /gateway/usage: it reads the shared totals from Redis before it answers (when it can). */
async function usageOn(replica: ReplicaLike, jwt: string): Promise<Usage> {
  const res = await raw(replica.url, { path: '/gateway/usage', headers: { authorization: `Bearer ${jwt}` } });
  assert.equal(res.status, 200);
  return JSON.parse(res.body) as Usage;
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await sleep(25);
  }
  assert.fail(what);
}

describe('usage and budgets shared by three replicas through Redis', { skip: redisMissing }, () => {
  let redisServer: RedisServer;
  const ctx = onRedis({
    async start() {
      redisServer = await startRedis();
      return { REDIS_URL: redisServer.url, ALLOWED_BOT_IDS: 'bot-ok', BUDGET_TOKENS_PER_DAY: '100', BUDGET_SYNC_INTERVAL_MS: '50' };
    },
    stop: async () => redisServer?.stop(),
  });
  let stack: Stack;
  let replicas: ReplicaLike[];
  before(() => ({ stack, replicas } = ctx()));
  const replica = (i: number) => replicas[i] as ReplicaLike;

  it('one budget across the replicas: tokens spent on each add up, and every replica refuses once the sum is over', async () => {
    const alice = await stack.callerToken('alice@example.com');
    // 28 tokens on each replica: none of them alone is near 100.
    for (let i = 0; i < 3; i++) assert.equal((await chat(replica(i).url, alice)).status, 200);
    for (let i = 0; i < 3; i++) await replica(i).gateway.usage.counter.flush();
    // 84 of 100, read by replica 0: one more chat is let in and takes the sum over.
    assert.equal((await usageOn(replica(0), alice)).day.total_tokens, 84);
    assert.equal((await chat(replica(0).url, alice)).status, 200);
    await replica(0).gateway.usage.counter.flush();

    for (let i = 0; i < 3; i++) {
      const usage = await usageOn(replica(i), alice);
      assert.deepEqual([usage.shared, usage.day.total_tokens, usage.day.requests], [true, 112, 4], `replica ${i} sees the shared totals`);
      const refused = await chat(replica(i).url, alice);
      assertEnvelope(refused, 429, 'budget-exceeded');
    }
    const bob = await stack.callerToken('bob@example.com');
    assert.equal((await chat(replica(1).url, bob)).status, 200, 'another user is unaffected');
  });

  it('usage-chat-counted-once-across-replicas: a chat retrieved through every replica after its end is counted once, by the first to claim it', async () => {
    const dave = await stack.callerToken('dave@example.com');
    const headers = { authorization: `Bearer ${dave}`, 'content-type': 'application/json' };
    const created = JSON.parse(
      (await raw(replica(0).url, { method: 'POST', path: '/v3/chat', headers, body: JSON.stringify({ bot_id: 'bot-ok', stream: false, additional_messages: [{ role: 'user', content: 'hello there', content_type: 'text' }] }) })).body,
    ) as { data: { id: string; conversation_id: string } };
    const retrieve = (i: number) => raw(replica(i).url, { path: `/v3/chat/retrieve?conversation_id=${created.data.conversation_id}&chat_id=${created.data.id}`, headers });
    // Polled to its end on replica 0, as the SDKs do, then retrieved again through the others.
    for (let i = 0; i < 50 && (JSON.parse((await retrieve(0)).body) as { data: { status: string } }).data.status !== 'completed'; i++) await sleep(20);
    for (const i of [1, 2, 1, 2]) assert.equal((await retrieve(i)).status, 200);
    await until(async () => {
      for (let i = 0; i < 3; i++) await replica(i).gateway.usage.counter.flush();
      return (await usageOn(replica(0), dave)).day.total_tokens > 0;
    }, 'the chat is counted');
    await sleep(100);
    for (let i = 0; i < 3; i++) await replica(i).gateway.usage.counter.flush();
    assert.equal((await usageOn(replica(1), dave)).day.total_tokens, 28, 'one chat of 28 tokens, not one per replica');
  });

  it('keeps no user id in clear in Redis; the keys share one hash slot per identity and expire with their window', async () => {
    const client = new Redis(redisServer.url);
    try {
      const keys = (await client.keys('*usage*')).sort();
      assert.ok(keys.length >= 4, `a day and a month key per identity: ${keys.join(', ')}`);
      for (const key of keys) {
        assert.doesNotMatch(key, /alice|bob|example/, 'no user id in a key');
        assert.match(key, /:usage:\{[0-9a-f]{32}\}:(day:\d{4}-\d{2}-\d{2}|month:\d{4}-\d{2}|writer:[0-9a-f]{16}|seen:[0-9a-f]{32})$/);
        const ttl = await client.pttl(key);
        // The window's end plus one day's margin, at most: a month key (and a writer's seq) lives about a month.
        assert.ok(ttl > 0 && ttl <= (key.includes(':day:') ? 2 : 32) * 86_400_000, `${key} expires (${ttl} ms)`);
        if (key.includes(':writer:')) assert.match(String(await client.get(key)), /^\d+$/);
        else if (key.includes(':seen:')) assert.equal(await client.get(key), '1');
        else for (const value of Object.values(await client.hgetall(key))) assert.match(value, /^\d+$/);
      }
    } finally {
      client.disconnect();
    }
  });

  it('Redis lost mid-run: counts locally, keeps serving and enforcing, shows it in metrics, and the counts reach Redis once it is back', async () => {
    const carol = await stack.callerToken('carol@example.com');
    await redisServer.kill();
    await until(async () => (await metric(replica(0).gateway, 'redis_up')) === 0, 'the loss is seen');
    for (let i = 0; i < 3; i++) assert.equal((await chat(replica(0).url, carol)).status, 200, 'keeps serving');
    const local = await usageOn(replica(0), carol);
    assert.deepEqual([local.shared, local.day.total_tokens], [false, 84], 'counted locally, and says so');
    assert.ok((await metric(replica(0).gateway, 'usage_unsynced')) >= 1, 'the unsynced counts show in the metrics');
    // One more takes her over: enforced from the local count while Redis is away.
    assert.equal((await chat(replica(0).url, carol)).status, 200);
    assertEnvelope(await chat(replica(0).url, carol), 429, 'budget-exceeded');

    await redisServer.restart();
    await until(async () => (await metric(replica(0).gateway, 'redis_up')) === 1, 'reconnected by itself');
    await until(async () => (await metric(replica(0).gateway, 'usage_unsynced')) === 0, 'the held counts are written');
    await until(async () => (await metric(replica(1).gateway, 'redis_up')) === 1, 'replica 1 reconnected');
    const elsewhere = await usageOn(replica(1), carol);
    assert.deepEqual([elsewhere.shared, elsewhere.day.total_tokens, elsewhere.day.requests], [true, 112, 4], 'the outage counts (four forwarded requests; a refused one is not counted) reached Redis and the other replicas');
    assertEnvelope(await chat(replica(1).url, carol), 429, 'budget-exceeded');
  });
});
