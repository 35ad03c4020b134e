import assert from 'node:assert/strict';
import type http from 'node:http';
import { before, describe, it } from 'node:test';
import type { RedisTopology } from '../../src/cache/redis-topology.js';
import { redisMissing } from '../helpers/redis.js';
import { SENTINEL_MASTER, startSentinelSet, type SentinelSet } from '../helpers/redis-topologies.js';
import { countBy, getStatus, metric, onRedis, readyz, redisContract, threeReplicaChecks, type ReplicaLike } from '../helpers/replicas.js';
import type { Stack } from '../helpers/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Issue 19: a master, its replica and three Sentinels, each with a password of its own. The
 * gateway knows only the Sentinels and the master's name; the last test kills the master.
 */
describe('Redis Sentinel: a master, a replica and three Sentinels', { skip: redisMissing }, () => {
  let set: SentinelSet;
  const ctx = onRedis({
    async start() {
      set = await startSentinelSet();
      return {
        REDIS_SENTINELS: set.sentinels.join(','),
        REDIS_SENTINEL_NAME: SENTINEL_MASTER,
        REDIS_SENTINEL_PASSWORD: set.sentinelPassword,
        REDIS_PASSWORD: set.password,
        // Short, so a lock copied to the promoted replica does not outlive the test's patience.
        CACHE_LOCK_TTL_SECONDS: '2',
      };
    },
    stop: async () => set?.stop(),
  });
  let stack: Stack;
  let replicas: ReplicaLike[];
  let agent: http.Agent;
  let topology: RedisTopology;
  before(() => ({ stack, replicas, agent, topology } = ctx()));

  redisContract('memory + redis through the Sentinels', ctx);

  describe('three gateway replicas', () => {
    threeReplicaChecks(ctx, 'sentinel');
  });

  it('/readyz names the master the Sentinels gave', async () => {
    assert.equal(await readyz(stack.gateway), `ok; redis up (${topology.label}: master 127.0.0.1:${set.masterPort})`);
  });

  /**
   * The bound of docs/deployment.md ("What a failover costs"), derived for this traffic: a
   * session that every replica already holds in memory costs nothing; each replica mints a
   * session at most once (its memory cache keeps the token), so a session first requested
   * while no master is reachable costs at most one mint per replica, N in all instead of 1;
   * every other session costs exactly 1. So exchanges <= sessions + (N - 1) x sessions in
   * flight during the failover, and every mint beyond one per session is counted in
   * coze_gateway_token_mints_unshared_total.
   */
  it('redis-sentinel-failover: the master SIGKILLed mid-run; every request answers 200, the gateway follows the promoted replica, mints stay within the bound', { timeout: 90_000 }, async (t) => {
    const N = replicas.length;
    const on = (i: number) => replicas[i % N] as ReplicaLike;
    const get = (url: string, jwt: string) => getStatus(agent, url, jwt);
    stack.emulator.reset();
    const statuses: number[] = [];

    // Warm sessions, held in memory by every replica before the failover.
    const warm = await Promise.all(Array.from({ length: 30 }, (_, i) => stack.callerToken(`failover-warm-${i}`)));
    for (let wave = 0; wave < N; wave++) statuses.push(...(await Promise.all(warm.map((jwt, i) => get(on(i + wave).url, jwt)))));
    assert.equal(stack.emulator.stats.exchanges, warm.length);

    // Waves: the warm sessions again, and 3 new sessions each asked on every replica at once.
    // The master is killed during wave KILL_WAVE; the run goes on until every replica has
    // shown the outage and is back, then 3 more waves check that sharing resumed.
    const KILL_WAVE = 2;
    const introduced = new Map<string, number>();
    const sawDown = new Set<number>();
    let recoveredWave = -1;
    let detailDuring = '';
    const deadline = Date.now() + 60_000;
    for (let wave = 0; recoveredWave < 0 || wave < recoveredWave + 3; wave++) {
      if (Date.now() > deadline) {
        const where = await Promise.all(replicas.map((r) => readyz(r.gateway)));
        assert.fail(`not back within 60 s: ${sawDown.size} replicas saw the outage; the Sentinels name ${(await set.namedMasters()).join(', ')} (master was port ${set.masterPort}, replica ${set.replicaPort}); replicas: ${where.join(' | ')}`);
      }
      const fresh = Array.from({ length: 3 }, (_, k) => `failover-new-${wave}-${k}`);
      for (const subject of fresh) introduced.set(subject, wave);
      const jwts = await Promise.all(fresh.map((s) => stack.callerToken(s)));
      const requests = [...warm.map((jwt, i) => get(on(i + wave).url, jwt)), ...jwts.flatMap((jwt) => replicas.map((r) => get(r.url, jwt)))];
      const killed = wave === KILL_WAVE ? set.killMaster() : undefined;
      statuses.push(...(await Promise.all(requests)));
      await killed;
      if (wave < KILL_WAVE) continue;
      const up = await Promise.all(replicas.map((r) => metric(r.gateway, 'redis_up')));
      up.forEach((u, i) => u === 0 && sawDown.add(i));
      if (up[0] === 0 && !detailDuring) detailDuring = await readyz(stack.gateway);
      // Recovered: every replica is back, and every Sentinel has taken in the promotion (a late
      // +switch-master would make a replica reconnect once more).
      if (recoveredWave < 0 && sawDown.size === N && up.every((u) => u === 1) && (await set.namedMasters()).every((a) => a === `127.0.0.1:${set.replicaPort}`)) recoveredWave = wave + 1;
      // Paced, so the outage spans tens of waves rather than hundreds.
      await sleep(100);
    }

    assert.deepEqual(countBy(statuses), { 200: statuses.length }, 'every request answered 200, from memory while Redis was unreachable');
    assert.equal(sawDown.size, N, 'every replica showed the outage in coze_gateway_redis_up');
    assert.match(detailDuring, /^ok; redis down for \d+ s \([A-Za-z_]+\); serving from memory$/);
    assert.equal(await set.masterAddress(), `127.0.0.1:${set.replicaPort}`, 'the Sentinels promoted the replica');
    for (const r of replicas) {
      assert.equal(await metric(r.gateway, 'redis_up'), 1, 'back by itself');
      assert.ok((await metric(r.gateway, 'redis_errors_total')) > 0, 'the failed commands were counted');
      assert.match(await readyz(r.gateway), new RegExp(`^ok; redis up \\(sentinel "${SENTINEL_MASTER}" via .*: master 127\\.0\\.0\\.1:${set.replicaPort}\\)$`), 'following the promoted replica');
    }

    const bySession = stack.emulator.stats.exchangesBySession;
    const exchangesOf = (subject: string) => [...bySession.entries()].filter(([session]) => session.endsWith(subject)).reduce((sum, [, n]) => sum + n, 0);
    for (let i = 0; i < warm.length; i++) assert.equal(exchangesOf(`failover-warm-${i}`), 1, 'a session held in memory costs nothing');
    const inFlight = [...introduced].filter(([, wave]) => wave >= KILL_WAVE && wave < recoveredWave).map(([subject]) => subject);
    for (const [subject, wave] of introduced) {
      const n = exchangesOf(subject);
      if (wave >= KILL_WAVE && wave < recoveredWave) assert.ok(n >= 1 && n <= N, `${subject}: ${n} exchanges, at most one per replica`);
      else assert.equal(n, 1, `${subject} (wave ${wave}, outside the failover): exactly 1 exchange`);
    }
    const sessions = warm.length + introduced.size;
    const exchanges = stack.emulator.stats.exchanges;
    const unshared = (await Promise.all(replicas.map((r) => metric(r.gateway, 'token_mints_unshared_total')))).reduce((a, b) => a + b, 0);
    t.diagnostic(`failover: ${exchanges} exchanges for ${sessions} sessions, ${inFlight.length} in flight during the failover (waves ${KILL_WAVE}-${recoveredWave - 1}), ${unshared} unshared mints; bound ${sessions + (N - 1) * inFlight.length}`);
    assert.ok(exchanges <= sessions + (N - 1) * inFlight.length, `${exchanges} exchanges for ${sessions} sessions, ${inFlight.length} in flight during the failover`);
    assert.ok(exchanges - sessions <= unshared, `every extra mint (${exchanges - sessions}) is counted as unshared (${unshared})`);
  });
});
