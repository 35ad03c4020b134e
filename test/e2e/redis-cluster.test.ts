import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { connectRedis, type RedisConnection } from '../../src/cache/redis-client.js';
import { createRedisTokenStore } from '../../src/cache/redis-token-store.js';
import { createTokenSealer } from '../../src/cache/token-crypto.js';
import type { CozeToken } from '../../src/coze/token-client.js';
import { createRateLimiter } from '../../src/policy/rate-limit.js';
import { createSharedRateLimiter } from '../../src/policy/shared-rate-limit.js';
import { clusterMissing, startRedisCluster, type RedisCluster } from '../helpers/redis-topologies.js';
import { onRedis, readyz, redisContract, threeReplicaChecks } from '../helpers/replicas.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const inFuture = (seconds: number) => Math.floor(Date.now() / 1000) + seconds;
const always = () => true;

/**
 * Issue 19: a three-master Redis Cluster built by redis-cli --cluster create. The gateway is
 * given one node as its seed and the narrowest ACL user on every node.
 */
describe('Redis Cluster: three masters', { skip: clusterMissing }, () => {
  let cluster: RedisCluster;
  const connections: RedisConnection[] = [];
  const ctx = onRedis({
    async start() {
      cluster = await startRedisCluster();
      // One seed: the others are learnt from it.
      return { REDIS_CLUSTER_NODES: cluster.nodes[0] as string, REDIS_USERNAME: cluster.username, REDIS_PASSWORD: cluster.password };
    },
    async stop() {
      for (const c of connections) await c.close();
      await cluster?.stop();
    },
  });
  async function connect(): Promise<RedisConnection> {
    const connection = connectRedis(ctx().topology, { commandTimeoutMs: 1000 });
    connections.push(connection);
    assert.ok(await connection.whenReady(5000), connection.describe());
    return connection;
  }

  redisContract('memory + redis cluster', ctx);

  describe('three gateway replicas', () => {
    threeReplicaChecks(ctx, 'cluster');
  });

  it('/readyz says where: the cluster and its three masters', async () => {
    assert.equal(await readyz(ctx().stack.gateway), `ok; redis up (cluster via ${cluster.nodes[0]}: 3 masters)`);
  });

  /** Keys of `namespace` on each node, through the admin user: which masters hold them. */
  const keysByNode = async (namespace: string) => Promise.all(cluster.ports.map(async (port) => (await cluster.admin(port).keys(`${namespace}:*`)).length));
  /** Errors Redis itself counted on every node (INFO errorstats), e.g. errorstat_CROSSSLOT. */
  const errorStats = async () => (await Promise.all(cluster.ports.map((port) => cluster.admin(port).info('errorstats')))).join('\n').match(/^errorstat_\w+/gm) ?? [];

  /** How often the cluster ran `command`, scripts' calls included (INFO commandstats of every node). */
  const commandCalls = async (command: string) =>
    (await Promise.all(cluster.ports.map((port) => cluster.admin(port).info('commandstats')))).reduce((sum, stats) => sum + Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0), 0);

  /**
   * `perNode` session names for each of the three masters. The store keeps a session's keys
   * under the hash tag {first 32 hex of sha256(session name)} (src/cache/redis-token-store.ts);
   * the cluster says which slot that is, and which master serves the slot.
   */
  async function sessionsOnEveryNode(prefix: string, perNode: number): Promise<string[]> {
    const admin = cluster.admin(cluster.ports[0] as number);
    const ranges = ((await admin.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>).map(([from, to, [, port]]) => ({ from, to, port }));
    const chosen = new Map<number, string[]>(cluster.ports.map((p) => [p, []]));
    for (let i = 0; [...chosen.values()].some((names) => names.length < perNode); i++) {
      const name = `${prefix}-${i}`;
      const tag = createHash('sha256').update(name).digest('hex').slice(0, 32);
      const slot = (await admin.call('CLUSTER', 'KEYSLOT', `{${tag}}`)) as number;
      const names = chosen.get((ranges.find((r) => slot >= r.from && slot <= r.to) as { port: number }).port) as string[];
      if (names.length < perNode) names.push(name);
    }
    return [...chosen.values()].flat();
  }

  it('redis-cluster-one-slot: every script runs on a real cluster, each on keys of one hash slot (no CROSSSLOT)', { timeout: 30_000 }, async () => {
    const connection = await connect();
    const namespace = `csg:slots:${randomBytes(4).toString('hex')}`;
    const errors: string[] = [];
    const store = createRedisTokenStore({
      redis: connection.client,
      subscriber: connection.subscriber,
      sealer: createTokenSealer(KEY),
      namespace,
      lockTtlMs: 1500,
      commandTimeoutMs: 1000,
      giveUpAfterMs: 4000,
      onError: (operation, err) => errors.push(`${operation}: ${(err as Error).message}`),
    });
    const rival = createRedisTokenStore({ redis: connection.client, subscriber: connection.subscriber, sealer: createTokenSealer(KEY), namespace, lockTtlMs: 1500, commandTimeoutMs: 1000, giveUpAfterMs: 4000 });
    // Its lock outlives this test: a retry after a failed mint finds it free only if RELEASE ran.
    const patient = createRedisTokenStore({ redis: connection.client, subscriber: connection.subscriber, sealer: createTokenSealer(KEY), namespace, lockTtlMs: 60_000, commandTimeoutMs: 1000, giveUpAfterMs: 4000 });
    const limiter = createSharedRateLimiter({
      requestsPerMinute: 100,
      redis: connection.client,
      namespace,
      local: createRateLimiter({ requestsPerMinute: 100 }),
      commandTimeoutMs: 1000,
      onError: (err) => errors.push(`rate_limit: ${(err as Error).message}`),
    });
    const before = await errorStats();
    const sessions = await sessionsOnEveryNode('slot-user', 3);
    for (const [i, session] of sessions.entries()) {
      // ACQUIRE, then WRITE. On one session per master, RENEW too: the mint goes on until Redis
      // has run a renewal (a PEXPIRE; a rival waiting on the lock runs none), while a rival
      // store waits for the token instead of minting a second one.
      const renewing = i % 3 === 0;
      let minted = 0;
      let rivalGo: () => void = () => undefined;
      const rivalMay = new Promise<void>((r) => (rivalGo = r));
      const mint = async () => {
        minted += 1;
        if (renewing) {
          const renewals = await commandCalls('pexpire');
          rivalGo();
          while ((await commandCalls('pexpire')) <= renewals) await sleep(20);
        }
        return { accessToken: `czs_${session}`, expiresAt: inFuture(900) };
      };
      const [token, other] = await Promise.all([store.mintOnce(session, mint, always), renewing ? rivalMay.then(() => rival.mintOnce(session, mint, always)) : undefined]);
      if (other) assert.equal(other.accessToken, token.accessToken);
      assert.equal(token.accessToken, `czs_${session}`);
      assert.equal(minted, 1);
      // INVALIDATE (compare-and-delete): then the next lookup mints.
      assert.equal(await store.invalidateIfSame(session, 'czs_not_it'), false);
      assert.equal(await store.invalidateIfSame(session, token.accessToken), true);
      // RELEASE: a failed mint lets go of the lock at once, so the retry mints without waiting for its TTL.
      await assert.rejects(patient.mintOnce(session, async () => Promise.reject(new Error('token endpoint down')), always), /token endpoint down/);
      const retried = await patient.mintOnce(session, async () => ({ accessToken: `czs_${session}_2`, expiresAt: inFuture(900) }), always);
      assert.equal(retried.accessToken, `czs_${session}_2`);
      // LEASE: the identity's bucket.
      assert.equal((await limiter.take(session)).allowed, true);
    }
    assert.deepEqual(errors, []);
    const spread = await keysByNode(namespace);
    assert.ok(spread.every((n) => n > 0), `the sessions' keys are on all three masters: ${spread.join(', ')}`);
    assert.deepEqual(await errorStats(), before, 'Redis counted no error: no CROSSSLOT, no NOPERM, no MOVED left unfollowed');

    // The check can fail: a script whose keys sit in two slots is refused by this cluster.
    await assert.rejects(connection.client.eval("return redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2])", 2, `${namespace}:{a}:x`, `${namespace}:{b}:x`), /CROSSSLOT/);
  });

  it('redis-cluster-wakeups: waiters on other connections are woken by the holder\'s PUBLISH, whichever node holds the keys', { timeout: 15_000 }, async () => {
    const [holderSide, waiterSide] = [await connect(), await connect()];
    const namespace = `csg:wake:${randomBytes(4).toString('hex')}`;
    // Neither the safety poll (60 s) nor the lock's expiry (30 s) can wake a waiter within this test's 15 s.
    const make = (c: RedisConnection) =>
      createRedisTokenStore({ redis: c.client, subscriber: c.subscriber, sealer: createTokenSealer(KEY), namespace, lockTtlMs: 30_000, safetyPollMs: 60_000, commandTimeoutMs: 1000, giveUpAfterMs: 4000 });
    const [holderStore, waiterStore] = [make(holderSide), make(waiterSide)];
    const sessions = await sessionsOnEveryNode('wake-user', 3);
    const releases: Array<(t: CozeToken) => void> = [];
    const started: Array<Promise<void>> = [];
    const holders = sessions.map((session) => {
      let onStart: () => void = () => undefined;
      started.push(new Promise<void>((r) => (onStart = r)));
      return holderStore.mintOnce(session, () => new Promise<CozeToken>((resolve) => {
        releases.push(resolve);
        onStart();
      }), always);
    });
    await Promise.all(started);
    const lockChecks = await commandCalls('pttl');
    const waiters = sessions.map((session) => waiterStore.mintOnce(session, () => assert.fail('no mint: the holder is alive'), always));
    // The acquire script asks the lock's PTTL only when it is held: every waiter found its lock held.
    while ((await commandCalls('pttl')) < lockChecks + sessions.length) await sleep(5);
    sessions.forEach((session, i) => (releases[i] as (t: CozeToken) => void)({ accessToken: `czs_woken_${session}`, expiresAt: inFuture(900) }));
    const [held, woken] = [await Promise.all(holders), await Promise.all(waiters)];
    assert.deepEqual(woken.map((t) => t.accessToken), held.map((t) => t.accessToken));
    const spread = await keysByNode(namespace);
    assert.ok(spread.every((n) => n > 0), `the sessions are on all three masters (${spread.join(', ')}): two thirds of the messages crossed nodes to reach the subscriber`);
  });
});

const KEY = randomBytes(32);
