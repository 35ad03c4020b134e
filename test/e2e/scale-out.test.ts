import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { Gateway } from '../../src/server.js';
import { redisMissing, startRedis, type RedisServer } from '../helpers/redis.js';
import { startStack, type Replica, type Stack } from '../helpers/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Issue 9's "done when": three gateways sharing one real redis-server in front of the
 * emulator, which counts every token exchange it verifies.
 */
describe('scale-out on Redis', { skip: redisMissing }, () => {
  let redisServer: RedisServer;
  let stack: Stack;
  let replicas: Array<Pick<Replica, 'gateway' | 'url'>>;
  let agent: http.Agent;

  before(async () => {
    redisServer = await startRedis();
    stack = await startStack({
      env: {
        REDIS_URL: redisServer.url,
        CACHE_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
        CACHE_COMMAND_TIMEOUT_MS: '200',
        // On, and high: every request also goes through the shared (leased) rate limit.
        RATE_LIMIT_RPM: '100000',
        // A stampede of one identity is the point here: no cap on its requests in flight.
        RATE_LIMIT_MAX_CONCURRENT: '0',
        LOG_LEVEL: 'warn',
      },
    });
    replicas = [stack, await stack.replica(), await stack.replica()];
    agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  });
  after(async () => {
    agent?.destroy();
    await stack?.close();
    await redisServer?.stop();
  });
  beforeEach(() => stack.emulator.reset());

  function get(url: string, jwt: string, path = '/v1/bots/b'): Promise<number> {
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
  const replicaFor = (i: number) => replicas[i % replicas.length] as Pick<Replica, 'gateway' | 'url'>;
  const metric = async (gateway: Gateway, name: string) => {
    const text = await gateway.metrics.registry.metrics();
    return [...text.matchAll(new RegExp(`^coze_gateway_${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0);
  };

  it('1,000 concurrent first requests for one new session across 3 replicas: exactly 1 exchange', async () => {
    const jwt = await stack.callerToken('stampede');
    const statuses = await Promise.all(Array.from({ length: 1000 }, (_, i) => get(replicaFor(i).url, jwt)));
    assert.ok(statuses.every((s) => s === 200), `all 200 (${statuses.filter((s) => s !== 200).length} were not)`);
    assert.equal(stack.emulator.stats.exchanges, 1);
  });

  it('10,000 requests over 500 sessions across 3 replicas: exactly 500 exchanges', async () => {
    const jwts = await Promise.all(Array.from({ length: 500 }, (_, i) => stack.callerToken(`many-${i}`)));
    let ok = 0;
    // 20 waves; each sends one request per session, every session through a different replica each wave.
    for (let wave = 0; wave < 20; wave++) {
      const statuses = await Promise.all(jwts.map((jwt, i) => get(replicaFor(i + wave).url, jwt)));
      ok += statuses.filter((s) => s === 200).length;
    }
    assert.equal(ok, 10_000);
    assert.equal(stack.emulator.stats.exchanges, 500);
    assert.ok([...stack.emulator.stats.exchangesBySession.values()].every((n) => n === 1));
  });

  /**
   * Issue 17 item 5: under load, slowness used to turn into duplicate mints (588 exchanges for
   * 500 sessions on a busy machine). These replicas share this process and a hog that takes
   * 15 ms of every turn of its event loop, longer than their Redis command timeout (10 ms):
   * every Redis answer is read only after its timer is due, as on a machine whose CPU is
   * taken. The token endpoint is slow too (400 ms), so replicas really wait for each other.
   */
  describe('under load: an event-loop hog and a slow token endpoint', () => {
    let loaded: Replica[] = [];
    let stopHog: (() => void) | undefined;
    before(async () => {
      for (let i = 0; i < 3; i++) loaded.push(await stack.replica({ CACHE_COMMAND_TIMEOUT_MS: '10' }));
    });
    after(async () => {
      for (const r of loaded) await r.close();
      loaded = [];
    });
    beforeEach(() => {
      stack.emulator.setTokenFault({ kind: 'delay', ms: 400 });
      stopHog = startEventLoopHog(15);
    });
    afterEach(() => {
      stopHog?.();
      stack.emulator.setTokenFault(undefined);
    });
    const loadedFor = (i: number) => loaded[i % loaded.length] as Replica;

    it('exactly 1 exchange for 1,000 concurrent first requests across 3 replicas', async () => {
      const jwt = await stack.callerToken('stampede-loaded');
      const statuses = await Promise.all(Array.from({ length: 1000 }, (_, i) => get(loadedFor(i).url, jwt)));
      stopHog?.();
      assert.deepEqual(countBy(statuses), { 200: 1000 });
      assert.equal(stack.emulator.stats.exchanges, 1);
      for (const r of loaded) assert.equal(await metric(r.gateway, 'token_mints_unshared_total'), 0, 'no mint went around Redis');
    });

    it('exchanges equal sessions for 1,500 requests over 500 sessions across 3 replicas', async () => {
      const jwts = await Promise.all(Array.from({ length: 500 }, (_, i) => stack.callerToken(`loaded-${i}`)));
      const statuses: number[] = [];
      // Three waves: each session's first request on each replica, two of them reading another's token.
      for (let wave = 0; wave < 3; wave++) statuses.push(...(await Promise.all(jwts.map((jwt, i) => get(loadedFor(i + wave).url, jwt)))));
      stopHog?.();
      assert.deepEqual(countBy(statuses), { 200: 1500 });
      assert.equal(stack.emulator.stats.exchanges, 500);
      assert.ok([...stack.emulator.stats.exchangesBySession.values()].every((n) => n === 1), 'one exchange per session');
    });
  });

  it('the rate limit is shared: 10 per minute across 3 replicas, not 10 each', async () => {
    const limited = [await stack.replica({ RATE_LIMIT_RPM: '10' }), await stack.replica({ RATE_LIMIT_RPM: '10' }), await stack.replica({ RATE_LIMIT_RPM: '10' })];
    try {
      const jwt = await stack.callerToken('limited');
      const statuses: number[] = [];
      for (let i = 0; i < 15; i++) statuses.push(await get((limited[i % 3] as Replica).url, jwt));
      assert.equal(statuses.filter((s) => s === 200).length, 10);
      assert.equal(statuses.filter((s) => s === 429).length, 5);
    } finally {
      for (const r of limited) await r.close();
    }
  });

  it('killing Redis mid-run loses no request; the fallback shows in metrics and /readyz; recovery once it is back', async () => {
    const jwts = await Promise.all(Array.from({ length: 30 }, (_, i) => stack.callerToken(`outage-${i}`)));
    const statuses: number[] = [];
    let killed = false;
    for (let wave = 0; wave < 12; wave++) {
      if (wave === 4) {
        await redisServer.kill();
        killed = true;
      }
      // New sessions keep arriving during the outage, so mints happen without Redis too.
      const wavesJwts = [...jwts.slice(0, 20), ...(killed ? [await stack.callerToken(`during-${wave}`)] : [])];
      statuses.push(...(await Promise.all(wavesJwts.map((jwt, i) => get(replicaFor(i + wave).url, jwt)))));
    }
    assert.equal(statuses.filter((s) => s !== 200).length, 0, `every request succeeded (${statuses.length})`);

    for (const r of replicas) {
      assert.equal(await metric(r.gateway, 'redis_up'), 0);
      assert.ok((await metric(r.gateway, 'redis_errors_total')) > 0, 'failures counted');
    }
    assert.match(await readyz(stack.gateway), /redis down/);

    await redisServer.restart();
    for (let i = 0; i < 100; i++) {
      const up = await Promise.all(replicas.map((r) => metric(r.gateway, 'redis_up')));
      if (up.every((u) => u === 1)) break;
      await sleep(50);
    }
    for (const r of replicas) assert.equal(await metric(r.gateway, 'redis_up'), 1, 'reconnected by itself');
    assert.match(await readyz(stack.gateway), /redis up/);

    // Shared again: a new session's concurrent first requests across replicas mint once.
    stack.emulator.reset();
    const fresh = await stack.callerToken('after-recovery');
    const after = await Promise.all(Array.from({ length: 90 }, (_, i) => get(replicaFor(i).url, fresh)));
    assert.ok(after.every((s) => s === 200));
    assert.equal(stack.emulator.stats.exchanges, 1);
    const raw = new Redis(redisServer.url);
    try {
      assert.equal((await raw.keys('*:token')).length, 1, 'the token is in Redis again');
    } finally {
      raw.disconnect();
    }
  });
});

async function readyz(gateway: Gateway): Promise<string> {
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

/**
 * Takes `blockMs` of synchronous work from every turn of this process's event loop (an
 * immediate that re-queues itself runs once per turn, after the I/O phase), until stopped.
 */
function startEventLoopHog(blockMs: number): () => void {
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    const end = performance.now() + blockMs;
    while (performance.now() < end);
    setImmediate(tick);
  };
  setImmediate(tick);
  return () => {
    stopped = true;
  };
}

const countBy = (values: number[]) => values.reduce<Record<number, number>>((counts, v) => ({ ...counts, [v]: (counts[v] ?? 0) + 1 }), {});
