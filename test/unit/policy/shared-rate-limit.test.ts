import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { createRateLimiter, type RateDecision } from '../../../src/policy/rate-limit.js';
import { createSharedRateLimiter, LEASE_TTL_MS, maxLease } from '../../../src/policy/shared-rate-limit.js';
import { createFakeClock } from '../../helpers/clock.js';
import { redisMissing, startRedis, useRedisServer } from '../../helpers/redis.js';

/**
 * The shared limit of issue 17 on a real redis-server: leases of allowance spent locally.
 * Lease lifetimes run on injected clocks; the bucket refills on Redis's own clock, so bounds
 * include what it can have refilled while the test ran.
 */
describe('shared rate limiter', { skip: redisMissing }, () => {
  const { connect } = useRedisServer();
  /** `n` replicas of one deployment: each its own connection, clock and local bucket. */
  async function replicas(n: number, requestsPerMinute: number, namespace = `rl:${randomBytes(6).toString('hex')}`) {
    return Promise.all(
      Array.from({ length: n }, async () => {
        const clock = createFakeClock();
        const redis = await connect();
        const errors: unknown[] = [];
        const limiter = createSharedRateLimiter({
          requestsPerMinute,
          redis,
          namespace,
          local: createRateLimiter({ requestsPerMinute, now: clock.now }),
          commandTimeoutMs: 1000,
          now: clock.now,
          onError: (err) => errors.push(err),
        });
        return { limiter, clock, redis, errors };
      }),
    );
  }
  const redisCalls = async () => {
    const stats = await (await connect()).info('commandstats');
    return [...stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  };
  /** Upper bound of what a bucket of `rpm` refilled in `ms` of real time. */
  const refilledIn = (rpm: number, ms: number) => Math.ceil((rpm * ms) / 60_000) + 1;

  it('below 200 per minute every decision is the bucket\'s own: 10 per minute across 3 replicas admits exactly 10', async () => {
    const cluster = await replicas(3, 10);
    const decisions: RateDecision[] = [];
    for (let i = 0; i < 15; i++) decisions.push(await (cluster[i % 3] as (typeof cluster)[number]).limiter.take('alice'));
    assert.equal(decisions.filter((d) => d.allowed).length, 10);
    assert.ok(decisions.slice(10).every((d) => !d.allowed && d.retryAfterSeconds >= 5 && d.retryAfterSeconds <= 6), JSON.stringify(decisions.slice(10)));
  });

  it('3 replicas stay within the documented bound: limit + 3 x (lease - 1), plus the refill', async () => {
    const rpm = 6000;
    const lease = maxLease(rpm);
    assert.equal(lease, 60);
    const cluster = await replicas(3, rpm);
    const started = Date.now();
    let admitted = 0;
    // 9,000 requests in waves of 90 concurrent, spread over the replicas.
    for (let wave = 0; wave < 100; wave++) {
      const decisions = await Promise.all(Array.from({ length: 90 }, (_, i) => (cluster[i % 3] as (typeof cluster)[number]).limiter.take('bob')));
      admitted += decisions.filter((d) => d.allowed).length;
    }
    const bound = 3 * (lease - 1);
    assert.ok(admitted <= rpm + bound + refilledIn(rpm, Date.now() - started), `${admitted} admitted`);
    assert.ok(admitted >= rpm - bound, `${admitted} admitted`);
  });

  it('the worst case: allowance held while the bucket refills is spent on top of it, 3 x (lease - 1) at most', async () => {
    const rpm = 6000;
    const lease = maxLease(rpm);
    const namespace = `rl:${randomBytes(6).toString('hex')}`;
    const cluster = await replicas(3, rpm, namespace);
    // Leases of 1, 2, 4 ... 32, then 60 and 60 (183 requests), and one more: each replica holds 59.
    for (const r of cluster) for (let i = 0; i < 184; i++) await r.limiter.take('carol');
    // The bucket refills to full while they still hold it.
    const raw = await connect();
    const [bucket] = await raw.keys(`${namespace}:rate:*`);
    await raw.hset(bucket as string, 'tokens', String(rpm));
    const started = Date.now();
    let admitted = 0;
    for (const r of cluster) while (r.limiter.tryTakeLocal('carol')?.allowed) admitted += 1;
    assert.equal(admitted, 3 * (lease - 1), 'spent without asking Redis');
    const [first] = cluster;
    for (;;) {
      if (!(await (first as NonNullable<typeof first>).limiter.take('carol')).allowed) break;
      admitted += 1;
    }
    assert.ok(admitted >= rpm + 3 * (lease - 1), `${admitted} admitted`);
    assert.ok(admitted <= rpm + 3 * (lease - 1) + refilledIn(rpm, Date.now() - started), `${admitted} admitted`);
  });

  it('decides locally, without a Redis round trip, while a lease lasts: 5,000 requests cost 14 calls', async () => {
    const [replica] = await replicas(1, 6_000_000);
    const { limiter } = replica as NonNullable<typeof replica>;
    const before = await redisCalls();
    let synchronous = 0;
    for (let i = 0; i < 5000; i++) {
      const local = limiter.tryTakeLocal('dave');
      if (local) {
        synchronous += 1;
        assert.equal(local.allowed, true);
        continue;
      }
      const decision = limiter.take('dave');
      assert.ok(decision instanceof Promise, 'take() goes to Redis only when tryTakeLocal could not decide');
      assert.equal((await decision).allowed, true);
    }
    // Leases of 1, 2, 4, ... 512 (1,023 requests in 10 calls), then 1,000 per call.
    assert.equal((await redisCalls()) - before, 14);
    assert.equal(synchronous, 5000 - 14);
  });

  it('a caller over its limit costs no round trip until the bucket has refilled', async () => {
    const [replica] = await replicas(1, 10);
    const { limiter, clock } = replica as NonNullable<typeof replica>;
    for (let i = 0; i < 10; i++) assert.equal((await limiter.take('erin')).allowed, true);
    const before = await redisCalls();
    assert.equal((await limiter.take('erin')).allowed, false);
    for (let i = 0; i < 1000; i++) assert.deepEqual(limiter.tryTakeLocal('erin'), { allowed: false, retryAfterSeconds: 6 });
    assert.equal((await redisCalls()) - before, 1);
    clock.advance(6000);
    assert.equal(limiter.tryTakeLocal('erin'), undefined, 'once the refusal is due to end, Redis decides again');
  });

  it('allowance left when a lease expires goes back to the bucket with the next lease', async () => {
    const namespace = `rl:${randomBytes(6).toString('hex')}`;
    // 200 per minute: leases of at most 2, and a refill of 1 token per 300 ms.
    const [replica] = await replicas(1, 200, namespace);
    const { limiter, clock } = replica as NonNullable<typeof replica>;
    await limiter.take('frank'); // a lease of 1, used up
    await limiter.take('frank'); // a lease of 2: 1 spent, 1 left
    const raw = await connect();
    const [bucket] = await raw.keys(`${namespace}:rate:*`);
    const tokens = async () => Number(await raw.hget(bucket as string, 'tokens'));
    const before = await tokens();
    clock.advance(LEASE_TTL_MS);
    const started = Date.now();
    await limiter.take('frank'); // hands back 1, and leases what the last lease served: 1
    const after = await tokens();
    // Without the hand-back the bucket would be 1 lower: -1 plus a refill far below 1.
    assert.ok(after >= before, `${before} -> ${after}`);
    assert.ok(after <= before + refilledIn(200, Date.now() - started + 5), `${before} -> ${after}`);
  });

  it('Redis lost mid-run: every request is still decided, by the replica\'s own bucket, and sharing resumes after', async () => {
    const own = await startRedis();
    try {
      const redis = await connect(own.url);
      const clock = createFakeClock();
      let errors = 0;
      const limiter = createSharedRateLimiter({
        requestsPerMinute: 100,
        redis,
        namespace: 'rl:lost',
        local: createRateLimiter({ requestsPerMinute: 100, now: clock.now }),
        commandTimeoutMs: 200,
        now: clock.now,
        onError: () => (errors += 1),
      });
      for (let i = 0; i < 40; i++) assert.equal((await limiter.take('gina')).allowed, true);
      await own.kill();
      const during: RateDecision[] = [];
      // Each request on its own turn of the event loop, as requests arriving on sockets are.
      for (let i = 0; i < 150; i++) {
        during.push(await limiter.take('gina'));
        await new Promise((r) => setImmediate(r));
      }
      assert.equal(during.filter((d) => d.allowed).length, 100, 'the local bucket (100) decided');
      assert.ok(during.slice(100).every((d) => !d.allowed));
      assert.ok(errors <= 1, `once the connection is known down, no call is even tried (${errors} failed)`);
      await own.restart();
      for (let i = 0; i < 100 && redis.status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal((await limiter.take('gina')).allowed, true, 'a fresh shared bucket after the restart');
      assert.equal((await redis.keys('rl:lost:rate:*')).length, 1, 'decided by Redis again');
    } finally {
      await own.stop();
    }
  });
});
