import assert from 'node:assert/strict';
import type http from 'node:http';
import { before, describe, it } from 'node:test';
import { connectRedis } from '../../src/cache/redis-client.js';
import { redisMissing } from '../helpers/redis.js';
import { startTlsRedis, type TlsRedis } from '../helpers/redis-topologies.js';
import { getStatus, metric, onRedis, readyz, redisContract, threeReplicaChecks } from '../helpers/replicas.js';
import type { Stack } from '../helpers/stack.js';

/**
 * Issue 19: one Redis node that speaks only TLS (a private CA made for this run) and admits
 * the gateway only as an ACL user holding exactly the commands of REDIS_ACL_COMMANDS on the
 * csg:* keys and channels: a command missing from that list fails these suites with NOPERM.
 */
describe('Redis: one node with TLS and an ACL user', { skip: redisMissing }, () => {
  let redis: TlsRedis;
  const ctx = onRedis({
    async start() {
      redis = await startTlsRedis();
      return { REDIS_URL: redis.url, REDIS_TLS_CA_FILE: redis.caFile, REDIS_USERNAME: redis.username, REDIS_PASSWORD_FILE: redis.passwordFile };
    },
    stop: async () => redis?.stop(),
  });
  let stack: Stack;
  let agent: http.Agent;
  before(() => ({ stack, agent } = ctx()));

  redisContract('memory + redis over TLS as the ACL user', ctx);

  describe('three gateway replicas', () => {
    threeReplicaChecks(ctx, 'tls');
  });

  it('/readyz says where: the node, over TLS', async () => {
    assert.equal(await readyz(stack.gateway), `ok; redis up (node 127.0.0.1:${new URL(redis.url).port} over TLS)`);
  });

  it('redis-tls-wrong-ca: a server the CA did not sign is refused; the replica serves from memory and says why', async () => {
    const wrong = await stack.replica({ REDIS_TLS_CA_FILE: redis.otherCaFile });
    try {
      assert.equal(await getStatus(agent, wrong.url, await stack.callerToken('tls-wrong-ca')), 200);
      assert.equal(await metric(wrong.gateway, 'redis_up'), 0);
      assert.match(await readyz(wrong.gateway), /^ok; redis down for \d+ s \((?:SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\); serving from memory$/);
    } finally {
      await wrong.close();
    }
  });

  it('redis-acl-wrong-password: a refused login is shown as WRONGPASS, never with the password', async () => {
    const wrong = await stack.replica({ REDIS_PASSWORD_FILE: redis.caFile.replace(/ca\.pem$/, 'server.pem') });
    try {
      assert.equal(await getStatus(agent, wrong.url, await stack.callerToken('tls-wrong-password')), 200);
      assert.match(await readyz(wrong.gateway), /^ok; redis down for \d+ s \(WRONGPASS\); serving from memory$/);
    } finally {
      await wrong.close();
    }
  });

  it('the gateway\'s user can touch nothing outside its prefix', async () => {
    const connection = connectRedis(ctx().topology, { commandTimeoutMs: 1000 });
    try {
      assert.ok(await connection.whenReady(5000));
      await assert.rejects(connection.client.hget('other-app:key', 'f'), /NOPERM/);
      await assert.rejects(connection.client.call('FLUSHALL'), /NOPERM/);
    } finally {
      await connection.close();
    }
  });
});
