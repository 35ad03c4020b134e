import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { ParsedConfig } from '../config/schema.js';

/** Closed set: how the shared Redis is reached (issue 19). */
export const REDIS_TOPOLOGIES = ['node', 'sentinel', 'cluster'] as const;
export type RedisTopologyKind = (typeof REDIS_TOPOLOGIES)[number];

/** A command connection on any topology: both speak the same commands and scripts. */
export type RedisClient = Redis | Cluster;

type CacheSettings = ParsedConfig['cache'];

/** How every client reacts to an outage, whatever the topology (set by connectRedis). */
export interface FailFast {
  connectTimeoutMs: number;
  /** Delay before reconnect attempt `n` (1, 2, ...). */
  retryDelayMs(attempt: number): number;
}

export interface RedisTopology {
  kind: RedisTopologyKind;
  /** Where it connects, never with a credential: for logs and the /readyz detail. */
  label: string;
  /** A new client that connects at once and reconnects by itself. */
  createClient(failFast: FailFast): RedisClient;
}

/**
 * The commands the gateway sends, scripts included (Redis checks a script's calls against the
 * caller's ACL too). The narrowest ACL an operator can give the gateway's user is these plus
 * its keys and channels: see redisAclRule and docs/deployment.md. The Redis suites run with
 * exactly this set, so a command missing here fails them with NOPERM.
 */
export const REDIS_ACL_COMMANDS = [
  // ioredis on connect: INFO for its ready check (and a Sentinel's role check); CLUSTER SLOTS
  // and CLUSTER INFO to learn a cluster's layout.
  'info',
  'cluster|slots',
  'cluster|info',
  // Scripts: EVALSHA, and EVAL once per node that does not know a script yet.
  'evalsha',
  'eval',
  // Inside the scripts (src/cache/redis-token-store.ts, src/policy/shared-rate-limit.ts,
  // src/usage/usage-store-redis.ts).
  'get',
  'set',
  'del',
  'incr',
  'pexpire',
  'pexpireat',
  'pttl',
  'hget',
  'hset',
  'hincrby',
  'hmget',
  'time',
  'publish',
  // Reads outside scripts, and the wake-up channel.
  'subscribe',
] as const;

/** An ACL SETUSER / users.acl rule for the gateway's user with the narrowest rights it needs. */
export function redisAclRule(user: string, password: string, keyPrefix: string): string {
  return [`user ${user} on >${password}`, `resetkeys ~${keyPrefix}:*`, `resetchannels &${keyPrefix}:*`, '-@all', ...REDIS_ACL_COMMANDS.map((c) => `+${c}`)].join(' ');
}

/** `host:port` or `[v6]:port`, or undefined when it is not one. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/.exec(text.trim());
  const port = Number(match?.[3]);
  if (!match || !(port >= 1 && port <= 65535)) return undefined;
  return { host: (match[1] ?? match[2]) as string, port };
}

/** The configured topology, or undefined when no Redis is configured. */
export function configuredTopology(cache: CacheSettings): RedisTopologyKind | undefined {
  if (cache.redisUrl) return 'node';
  if (cache.redisSentinels?.length) return 'sentinel';
  if (cache.redisClusterNodes?.length) return 'cluster';
  return undefined;
}

/**
 * ioredis's own Sentinel and Cluster clients, set up from a validated config (load.ts has
 * refused contradictions, so exactly one topology is set). Auth and TLS apply to the data
 * nodes on every topology.
 */
export function redisTopology(cache: CacheSettings): RedisTopology | undefined {
  const kind = configuredTopology(cache);
  if (!kind) return undefined;
  const tls = tlsOptions(cache);
  const auth: Pick<RedisOptions, 'username' | 'password'> = {
    ...(cache.redisUsername ? { username: cache.redisUsername } : {}),
    ...(cache.redisPassword ? { password: cache.redisPassword } : {}),
  };
  const tlsNote = tls ? ' over TLS' : '';
  const nodeOptions = (f: FailFast): RedisOptions => ({
    ...auth,
    ...(tls ? { tls } : {}),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: f.connectTimeoutMs,
    retryStrategy: f.retryDelayMs,
  });

  if (kind === 'node') {
    const url = cache.redisUrl as string;
    return { kind, label: `node ${new URL(url).host}${tlsNote}`, createClient: (f) => new Redis(url, nodeOptions(f)) };
  }
  if (kind === 'sentinel') {
    const sentinels = (cache.redisSentinels ?? []).map((s) => parseHostPort(s) as { host: string; port: number });
    const name = cache.redisSentinelName as string;
    return {
      kind,
      label: `sentinel "${name}" via ${(cache.redisSentinels ?? []).join(', ')}${tlsNote}`,
      createClient: (f) =>
        new Redis({
          ...nodeOptions(f),
          sentinels,
          name,
          ...(cache.redisSentinelUsername ? { sentinelUsername: cache.redisSentinelUsername } : {}),
          ...(cache.redisSentinelPassword ? { sentinelPassword: cache.redisSentinelPassword } : {}),
          ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
          // A Sentinel that accepts a connection but never answers must not hold up a reconnect.
          sentinelCommandTimeout: f.connectTimeoutMs,
          // The Sentinels announce a promotion (+switch-master): the client moves at once, even
          // when the old master is still up (a partition) and would otherwise keep the connection.
          failoverDetector: true,
        }),
    };
  }
  const seeds = (cache.redisClusterNodes ?? []).map((s) => parseHostPort(s) as { host: string; port: number });
  return {
    kind,
    label: `cluster via ${(cache.redisClusterNodes ?? []).join(', ')}${tlsNote}`,
    createClient: (f) => {
      const { enableOfflineQueue: _queue, retryStrategy: _retry, ...redisOptions } = nodeOptions(f);
      return new Cluster(seeds, {
        enableOfflineQueue: false,
        // Its ready check (CLUSTER INFO) races the node connections it opens and, with no offline
        // queue, fails and starts over; connectRedis waits for the masters' connections instead.
        enableReadyCheck: false,
        clusterRetryStrategy: f.retryDelayMs,
        redisOptions,
        // With TLS, seeds are connected to by name, not by the address ioredis would resolve
        // them to, so a certificate that names the host verifies (managed clusters).
        ...(tls ? { dnsLookup: (address: string, callback: (err: null, address: string) => void) => callback(null, address) } : {}),
      });
    },
  };
}

function tlsOptions(cache: CacheSettings): ConnectionOptions | undefined {
  const wanted = cache.redisTls || (cache.redisUrl !== undefined && new URL(cache.redisUrl).protocol === 'rediss:');
  if (!wanted) return undefined;
  return cache.redisTlsCaFile ? { ca: readFileSync(cache.redisTlsCaFile) } : {};
}
