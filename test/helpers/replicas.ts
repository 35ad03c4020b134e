import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { connectRedis, type RedisConnection } from '../../src/cache/redis-client.js';
import { redisTopology, type RedisTopology } from '../../src/cache/redis-topology.js';
import type { Gateway } from '../../src/server.js';
import { startStack, type Replica, type Stack } from './stack.js';
import { inFrontOfRedis, runTokenCacheContract } from './token-cache-contract.js';

export type ReplicaLike = Pick<Replica, 'gateway' | 'url'>;

/** GET on a gateway with a caller's JWT, over `agent`: the status once the body has been read. */
export function getStatus(agent: http.Agent, url: string, jwt: string, path = '/v1/bots/b'): Promise<number> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent, headers: { authorization: `Bearer ${jwt}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

/** The sum of a metric's series on one gateway (0 when it has none). */
export async function metric(gateway: Gateway, name: string): Promise<number> {
  const text = await gateway.metrics.registry.metrics();
  return [...text.matchAll(new RegExp(`^coze_gateway_${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** The /readyz detail of a gateway, which must still be ready (it serves from memory). */
export async function readyz(gateway: Gateway): Promise<string> {
  const server = http.createServer(gateway.adminHandler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as { port: number }).port}/readyz`);
    assert.equal(res.status, 200, 'still ready: it serves from memory');
    return ((await res.json()) as { detail: string }).detail;
  } finally {
    server.close();
  }
}

export const countBy = (values: number[]) => values.reduce<Record<number, number>>((counts, v) => ({ ...counts, [v]: (counts[v] ?? 0) + 1 }), {});

export interface ReplicaSet {
  stack: Stack;
  /** The stack's own gateway and two more: three replicas of one deployment. */
  replicas: ReplicaLike[];
  agent: http.Agent;
  topology: RedisTopology;
}

/**
 * Registers the hooks of a suite on one Redis topology: `redis.start()` starts it and returns
 * the gateway's settings for it, then three gateways share it (the shared rate limit on, so
 * every request goes through it too); everything is stopped afterwards, the topology last.
 */
export function onRedis(redis: { start(): Promise<Record<string, string>>; stop(): Promise<void> }): () => ReplicaSet {
  let set: ReplicaSet | undefined;
  let stack: Stack | undefined;
  let agent: http.Agent | undefined;
  before(async () => {
    const env = await redis.start();
    // The shared rate limit is on (and high); a stampede of one identity is tested, so no cap on
    // its requests in flight. Commands get 2 s: every suite counts failed commands, and a TLS
    // round trip on a loaded machine must not count as one.
    stack = await startStack({ env: { CACHE_ENCRYPTION_KEY: randomBytes(32).toString('base64'), CACHE_COMMAND_TIMEOUT_MS: '2000', RATE_LIMIT_RPM: '100000', RATE_LIMIT_MAX_CONCURRENT: '0', LOG_LEVEL: 'warn', ...env } });
    agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    set = { stack, replicas: [stack, await stack.replica(), await stack.replica()], agent, topology: redisTopology(stack.config.cache) as RedisTopology };
  });
  after(async () => {
    agent?.destroy();
    await stack?.close();
    await redis.stop();
  });
  return () => set as ReplicaSet;
}

/** The token-cache contract on the suite's topology, through a connection of its own. */
export function redisContract(name: string, ctx: () => ReplicaSet): void {
  describe(`token-cache contract: ${name}`, () => {
    let connection: RedisConnection;
    before(async () => {
      connection = connectRedis(ctx().topology, { commandTimeoutMs: 1000 });
      assert.ok(await connection.whenReady(5000), connection.describe());
    });
    after(() => connection?.close());
    // Under the gateway's own prefix: the suites' ACL users may touch nothing else.
    runTokenCacheContract((options) => inFrontOfRedis(connection.client, connection.subscriber, 'csg:contract')(options));
  });
}

/**
 * Issue 19: the three-replica checks every Redis topology passes (three gateways in front of
 * the emulator, which counts the token exchanges it verified, sharing that topology). Call it
 * inside a describe whose `before` has filled `ctx`; `label` keeps sessions apart between suites.
 */
export function threeReplicaChecks(ctx: () => Pick<ReplicaSet, 'stack' | 'replicas' | 'agent'>, label: string): void {
  const on = (i: number) => {
    const { replicas } = ctx();
    return replicas[i % replicas.length] as ReplicaLike;
  };

  it('1,000 concurrent first requests for one new session across 3 replicas: exactly 1 exchange', async () => {
    const { stack, agent } = ctx();
    stack.emulator.reset();
    const jwt = await stack.callerToken(`${label}-stampede`);
    const statuses = await Promise.all(Array.from({ length: 1000 }, (_, i) => getStatus(agent, on(i).url, jwt)));
    assert.deepEqual(countBy(statuses), { 200: 1000 });
    assert.equal(stack.emulator.stats.exchanges, 1);
  });

  it('1,500 requests over 500 new sessions across 3 replicas: exchanges equal sessions', async () => {
    const { stack, agent } = ctx();
    stack.emulator.reset();
    const jwts = await Promise.all(Array.from({ length: 500 }, (_, i) => stack.callerToken(`${label}-many-${i}`)));
    const statuses: number[] = [];
    // Three waves: each session's first request on each replica; two of them read another's token.
    for (let wave = 0; wave < 3; wave++) statuses.push(...(await Promise.all(jwts.map((jwt, i) => getStatus(agent, on(i + wave).url, jwt)))));
    assert.deepEqual(countBy(statuses), { 200: 1500 });
    assert.equal(stack.emulator.stats.exchanges, 500);
    assert.ok([...stack.emulator.stats.exchangesBySession.values()].every((n) => n === 1), 'one exchange per session');
  });

  it('the rate limit is shared: 10 per minute across 3 replicas, not 10 each', async () => {
    const { stack, agent } = ctx();
    const limited = [await stack.replica({ RATE_LIMIT_RPM: '10' }), await stack.replica({ RATE_LIMIT_RPM: '10' }), await stack.replica({ RATE_LIMIT_RPM: '10' })];
    try {
      const jwt = await stack.callerToken(`${label}-limited`);
      const statuses: number[] = [];
      for (let i = 0; i < 15; i++) statuses.push(await getStatus(agent, (limited[i % 3] as Replica).url, jwt));
      assert.deepEqual(countBy(statuses), { 200: 10, 429: 5 });
      for (const r of limited) assert.equal(await metric(r.gateway, 'redis_errors_total'), 0);
    } finally {
      for (const r of limited) await r.close();
    }
  });

  it('usage counts are shared: one request on each replica adds up to 3 in one count, read back through Redis', async () => {
    const { stack, agent, replicas } = ctx();
    const jwt = await stack.callerToken(`${label}-usage`);
    for (let i = 0; i < 3; i++) assert.equal(await getStatus(agent, on(i).url, jwt), 200);
    for (const r of replicas) await r.gateway.usage.counter.flush();
    const res = await fetch(`${on(0).url}/gateway/usage`, { headers: { authorization: `Bearer ${jwt}` } });
    const usage = (await res.json()) as { shared: boolean; day: { requests: number }; month: { requests: number } };
    assert.deepEqual([usage.shared, usage.day.requests, usage.month.requests], [true, 3, 3]);
  });

  it('no Redis command failed and no mint went around Redis: the topology (and its ACL) served every step', async () => {
    for (const r of ctx().replicas) {
      assert.equal(await metric(r.gateway, 'redis_up'), 1);
      assert.equal(await metric(r.gateway, 'redis_errors_total'), 0, 'a refused command (NOPERM, CROSSSLOT, MOVED...), the usage script\'s included, is counted here');
      assert.equal(await metric(r.gateway, 'token_mints_unshared_total'), 0);
    }
  });
}
