import assert from 'node:assert/strict';
import http from 'node:http';
import { it } from 'node:test';
import type { Gateway } from '../../src/server.js';
import type { Replica, Stack } from './stack.js';

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

/**
 * Issue 19: the three-replica checks every Redis topology passes (three gateways in front of
 * the emulator, which counts the token exchanges it verified, sharing that topology). Call it
 * inside a describe whose `before` has filled `ctx`; `label` keeps sessions apart between suites.
 */
export function threeReplicaChecks(ctx: () => { stack: Stack; replicas: ReplicaLike[]; agent: http.Agent }, label: string): void {
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

  it('no Redis command failed and no mint went around Redis: the topology (and its ACL) served every step', async () => {
    for (const r of ctx().replicas) {
      assert.equal(await metric(r.gateway, 'redis_up'), 1);
      assert.equal(await metric(r.gateway, 'redis_errors_total'), 0, 'a refused command (NOPERM, CROSSSLOT, MOVED...) is counted here');
      assert.equal(await metric(r.gateway, 'token_mints_unshared_total'), 0);
    }
  });
}
