import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { configuredTopology, parseHostPort } from '../cache/redis-topology.js';
import type { ParsedConfig } from './schema.js';

/** A problem with one cache.* setting; the loader adds its environment variable. */
export interface RedisSettingProblem {
  key: string;
  message: string;
}

const TOPOLOGY_KEYS = ['cache.redisUrl', 'cache.redisSentinels', 'cache.redisClusterNodes'] as const;
const ONE_OF = 'cache.redisUrl, cache.redisSentinels or cache.redisClusterNodes';

/**
 * The Redis settings that only make sense together (issue 19): exactly one topology, a master
 * name with Sentinels, host:port lists, TLS asked for consistently, a readable CA, and a
 * credential in one place only. Messages never echo a secret: URLs and passwords are named by
 * their setting, not shown.
 */
export function checkRedisSettings(cache: ParsedConfig['cache']): RedisSettingProblem[] {
  const problems: RedisSettingProblem[] = [];
  const add = (key: string, message: string) => problems.push({ key, message });
  const values = { 'cache.redisUrl': cache.redisUrl, 'cache.redisSentinels': cache.redisSentinels, 'cache.redisClusterNodes': cache.redisClusterNodes };
  const set = TOPOLOGY_KEYS.filter((k) => values[k] !== undefined);
  if (set.length > 1) add(set[1] as string, `set only one of ${TOPOLOGY_KEYS.join(', ')}; ${set.join(' and ')} are both set`);
  const topology = set.length === 1 ? configuredTopology(cache) : undefined;

  for (const key of ['cache.redisSentinels', 'cache.redisClusterNodes'] as const) {
    const list = values[key];
    if (list?.length === 0) add(key, 'expected at least one host:port');
    for (const entry of list ?? []) {
      if (!parseHostPort(entry)) add(key, `"${entry}" is not host:port (e.g. redis-node-0.redis-headless:${key === 'cache.redisSentinels' ? 26379 : 6379})`);
    }
  }

  if (cache.redisSentinels && !cache.redisSentinelName) add('cache.redisSentinelName', 'is required with cache.redisSentinels: the master name the Sentinels monitor (mymaster in the Bitnami chart)');
  for (const key of ['redisSentinelName', 'redisSentinelUsername', 'redisSentinelPassword'] as const) {
    if (cache[key] !== undefined && !cache.redisSentinels) add(`cache.${key}`, 'applies only with cache.redisSentinels, which is not set');
  }
  for (const key of ['redisUsername', 'redisPassword'] as const) {
    if (cache[key] !== undefined && set.length === 0) add(`cache.${key}`, `applies only to a Redis, and none is configured (${ONE_OF})`);
  }

  const url = cache.redisUrl ? new URL(cache.redisUrl) : undefined;
  if (url?.username && cache.redisUsername) add('cache.redisUsername', 'the user is also in cache.redisUrl: give it in one place');
  if (url?.password && cache.redisPassword) add('cache.redisPassword', 'a password is also in cache.redisUrl: give it in one place');

  const urlTls = url?.protocol === 'rediss:';
  if (cache.redisTls && url && !urlTls) add('cache.redisTls', 'cache.redisUrl is redis://: for TLS to one node, use a rediss:// URL');
  else if (cache.redisTls && set.length === 0) add('cache.redisTls', `applies only to a Redis, and none is configured (${ONE_OF})`);
  if (cache.redisTlsCaFile !== undefined) {
    if (topology && !cache.redisTls && !urlTls) {
      add('cache.redisTlsCaFile', topology === 'node' ? 'needs TLS: use a rediss:// URL in cache.redisUrl' : 'needs TLS: set cache.redisTls to true');
    }
    const problem = checkCaFile(cache.redisTlsCaFile);
    if (problem) add('cache.redisTlsCaFile', problem);
  }
  return problems;
}

function checkCaFile(path: string): string | undefined {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    return `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
  }
  try {
    new X509Certificate(pem);
  } catch {
    return `${path} is not a PEM certificate (-----BEGIN CERTIFICATE-----)`;
  }
  return undefined;
}
