import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { redisTopology, parseHostPort, redisAclRule, REDIS_ACL_COMMANDS } from '../../../src/cache/redis-topology.js';
import { ConfigError, formatIssue, loadConfig } from '../../../src/config/load.js';
import { generateRsaKey } from '../../helpers/keys.js';
import { writeTestCertificates } from '../../helpers/tls-certs.js';

const key = generateRsaKey();
const ENCRYPTION_KEY = Buffer.alloc(32, 7).toString('base64');

/** Issue 19: the Redis topology settings, their _FILE secrets and the checks across them. */
describe('Redis settings', () => {
  let dir: string;
  let caFile: string;
  let baseEnv: Record<string, string>;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'csg-redis-config-'));
    const keyFile = join(dir, 'private_key.pem');
    writeFileSync(keyFile, key.privatePkcs8);
    caFile = (await writeTestCertificates(dir)).caFile;
    baseEnv = { COZE_APP_ID: '1127900106117', COZE_KEY_ID: 'kid-1', COZE_PRIVATE_KEY_FILE: keyFile, IDENTITY_API_KEYS_FILE: '/dev/null', CACHE_ENCRYPTION_KEY: ENCRYPTION_KEY };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const load = (env: Record<string, string>) => loadConfig({ env: { ...baseEnv, ...env } });
  function problems(env: Record<string, string>): string[] {
    try {
      load(env);
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      return err.issues.map(formatIssue);
    }
    assert.fail('expected a ConfigError');
  }

  it('one node over TLS with a private CA and an ACL user from their own settings, the password from a file', () => {
    const passwordFile = join(dir, 'redis-password');
    writeFileSync(passwordFile, 's3cret-pass\n');
    const config = load({ REDIS_URL: 'rediss://redis.example:6380/2', REDIS_TLS_CA_FILE: caFile, REDIS_USERNAME: 'gw', REDIS_PASSWORD_FILE: passwordFile });
    assert.equal(config.cache.redisPassword, 's3cret-pass');
    const topology = redisTopology(config.cache);
    assert.deepEqual({ kind: topology?.kind, label: topology?.label }, { kind: 'node', label: 'node redis.example:6380 over TLS' });
    const client = topology?.createClient({ connectTimeoutMs: 1000, retryDelayMs: () => 100 }) as Redis;
    client.on('error', () => undefined);
    try {
      assert.ok(client instanceof Redis);
      const o = client.options;
      assert.deepEqual({ host: o.host, port: o.port, db: o.db, username: o.username, password: o.password }, { host: 'redis.example', port: 6380, db: 2, username: 'gw', password: 's3cret-pass' });
      assert.match(String((o.tls as { ca?: Buffer })?.ca), /BEGIN CERTIFICATE/, 'the private CA, not the system CAs');
      assert.equal(o.enableOfflineQueue, false, 'fails fast');
    } finally {
      client.disconnect();
    }
  });

  it('Sentinel: the list from a comma list, the master name, both passwords; TLS to Sentinels and data nodes', () => {
    const config = load({
      REDIS_SENTINELS: 'sentinel-0:26379, sentinel-1:26379,[::1]:26380',
      REDIS_SENTINEL_NAME: 'mymaster',
      REDIS_SENTINEL_PASSWORD: 'sentinel-pass',
      REDIS_PASSWORD: 'data-pass',
      REDIS_TLS: 'true',
      REDIS_TLS_CA_FILE: caFile,
    });
    assert.deepEqual(config.cache.redisSentinels, ['sentinel-0:26379', 'sentinel-1:26379', '[::1]:26380']);
    const topology = redisTopology(config.cache);
    assert.equal(topology?.label, 'sentinel "mymaster" via sentinel-0:26379, sentinel-1:26379, [::1]:26380 over TLS');
    const client = topology?.createClient({ connectTimeoutMs: 1000, retryDelayMs: () => 100 }) as Redis;
    client.on('error', () => undefined);
    try {
      const o = client.options;
      assert.deepEqual(o.sentinels, [
        { host: 'sentinel-0', port: 26379 },
        { host: 'sentinel-1', port: 26379 },
        { host: '::1', port: 26380 },
      ]);
      assert.deepEqual({ name: o.name, sentinelPassword: o.sentinelPassword, password: o.password, tlsForSentinel: o.enableTLSForSentinelMode, failoverDetector: o.failoverDetector }, { name: 'mymaster', sentinelPassword: 'sentinel-pass', password: 'data-pass', tlsForSentinel: true, failoverDetector: true });
      assert.match(String((o.sentinelTLS as { ca?: Buffer })?.ca), /BEGIN CERTIFICATE/);
      assert.match(String((o.tls as { ca?: Buffer })?.ca), /BEGIN CERTIFICATE/);
    } finally {
      client.disconnect();
    }
  });

  it('Cluster: seeds from a YAML list, auth and TLS for every node', () => {
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, `cache:\n  redisClusterNodes: [redis-0:6379, redis-1:6379]\n  redisUsername: gw\n  redisTls: true\n`);
    const config = load({ GATEWAY_CONFIG: file, REDIS_PASSWORD: 'pw' });
    const topology = redisTopology(config.cache);
    assert.deepEqual({ kind: topology?.kind, label: topology?.label }, { kind: 'cluster', label: 'cluster via redis-0:6379, redis-1:6379 over TLS' });
    const cluster = topology?.createClient({ connectTimeoutMs: 1000, retryDelayMs: () => 100 }) as Cluster;
    cluster.on('error', () => undefined);
    try {
      assert.ok(cluster instanceof Cluster);
      assert.deepEqual({ username: cluster.options.redisOptions?.username, password: cluster.options.redisOptions?.password, tls: cluster.options.redisOptions?.tls }, { username: 'gw', password: 'pw', tls: {} });
      assert.equal(cluster.options.enableOfflineQueue, false);
    } finally {
      cluster.disconnect();
    }
  });

  it('redis-settings-all-reported: every contradiction at once, by YAML key and environment variable, no secret echoed', () => {
    const { CACHE_ENCRYPTION_KEY: _key, ...withoutKey } = baseEnv;
    const issues = (() => {
      try {
        loadConfig({
          env: {
            ...withoutKey,
            REDIS_SENTINELS: 'sentinel-0:26379,sentinel-1',
            REDIS_CLUSTER_NODES: 'redis-0:6379,redis-1:99999',
            REDIS_TLS_CA_FILE: join(dir, 'missing-ca.pem'),
            REDIS_PASSWORD: 'pw-never-shown',
          },
        });
      } catch (err) {
        return (err as ConfigError).issues.map(formatIssue);
      }
      return [];
    })();
    assert.deepEqual(issues, [
      'cache.redisClusterNodes (REDIS_CLUSTER_NODES): set only one of cache.redisUrl, cache.redisSentinels, cache.redisClusterNodes; cache.redisSentinels and cache.redisClusterNodes are both set',
      'cache.redisSentinels (REDIS_SENTINELS): "sentinel-1" is not host:port (e.g. redis-node-0.redis-headless:26379)',
      'cache.redisClusterNodes (REDIS_CLUSTER_NODES): "redis-1:99999" is not host:port (e.g. redis-node-0.redis-headless:6379)',
      'cache.redisSentinelName (REDIS_SENTINEL_NAME): is required with cache.redisSentinels: the master name the Sentinels monitor (mymaster in the Bitnami chart)',
      `cache.redisTlsCaFile (REDIS_TLS_CA_FILE): cannot read ${join(dir, 'missing-ca.pem')} (ENOENT)`,
      'cache.encryptionKey (CACHE_ENCRYPTION_KEY): is required when Redis is configured (cache.redisUrl, cache.redisSentinels or cache.redisClusterNodes): tokens are encrypted at rest',
    ]);
    assert.ok(!issues.join('\n').includes('pw-never-shown'));
  });

  it('refuses settings that would be silently ignored or contradict the URL', () => {
    const notCa = join(dir, 'not-a-cert.pem');
    writeFileSync(notCa, 'hello');
    assert.deepEqual(problems({ REDIS_URL: 'redis://:inline-secret@redis:6379', REDIS_PASSWORD: 'pw', REDIS_TLS: 'true', REDIS_TLS_CA_FILE: notCa, REDIS_SENTINEL_NAME: 'mymaster' }), [
      'cache.redisSentinelName (REDIS_SENTINEL_NAME): applies only with cache.redisSentinels, which is not set',
      'cache.redisPassword (REDIS_PASSWORD): a password is also in cache.redisUrl: give it in one place',
      'cache.redisTls (REDIS_TLS): cache.redisUrl is redis://: for TLS to one node, use a rediss:// URL',
      `cache.redisTlsCaFile (REDIS_TLS_CA_FILE): ${notCa} is not a PEM certificate (-----BEGIN CERTIFICATE-----)`,
    ]);
    assert.deepEqual(problems({ REDIS_CLUSTER_NODES: 'redis-0:6379', REDIS_TLS_CA_FILE: caFile }), ['cache.redisTlsCaFile (REDIS_TLS_CA_FILE): needs TLS: set cache.redisTls to true']);
    assert.deepEqual(problems({ REDIS_URL: 'redis://redis:6379', REDIS_TLS_CA_FILE: caFile }), ['cache.redisTlsCaFile (REDIS_TLS_CA_FILE): needs TLS: use a rediss:// URL in cache.redisUrl']);
    assert.deepEqual(problems({ REDIS_USERNAME: 'gw', REDIS_TLS: 'true' }), [
      'cache.redisUsername (REDIS_USERNAME): applies only to a Redis, and none is configured (cache.redisUrl, cache.redisSentinels or cache.redisClusterNodes)',
      'cache.redisTls (REDIS_TLS): applies only to a Redis, and none is configured (cache.redisUrl, cache.redisSentinels or cache.redisClusterNodes)',
    ]);
    assert.deepEqual(problems({ REDIS_URL: 'redis://gw@redis:6379', REDIS_USERNAME: 'gw' }), ['cache.redisUsername (REDIS_USERNAME): the user is also in cache.redisUrl: give it in one place']);
  });

  it('parses host:port, bracketed IPv6 included, and nothing else', () => {
    assert.deepEqual(parseHostPort('redis-0.redis-headless.ns.svc:26379'), { host: 'redis-0.redis-headless.ns.svc', port: 26379 });
    assert.deepEqual(parseHostPort('[fd00::1]:6379'), { host: 'fd00::1', port: 6379 });
    for (const bad of ['redis', 'redis:', ':6379', 'redis:0', 'redis:65536', 'redis://redis:6379', 'fd00::1:6379', 'a b:1']) assert.equal(parseHostPort(bad), undefined, bad);
  });

  it('the ACL rule names the key and channel patterns of the prefix and exactly the listed commands; docs/deployment.md shows that very rule', () => {
    assert.equal(
      redisAclRule('gw', 'PASSWORD', 'csg'),
      `user gw on >PASSWORD resetkeys ~csg:* resetchannels &csg:* -@all ${REDIS_ACL_COMMANDS.map((c) => `+${c}`).join(' ')}`,
    );
    const deployment = readFileSync(new URL('../../../docs/deployment.md', import.meta.url), 'utf8');
    assert.ok(deployment.includes(`ACL SETUSER ${redisAclRule('coze-gateway', 'PASSWORD', 'csg').replace(/^user /, '')}\n`), 'the documented rule is the one the suites run with');
  });
});
