import { redisReady, withTimeout } from '../cache/redis-client.js';
import type { RedisClient } from '../cache/redis-topology.js';
import type { SharedUsageStore, Totals, WindowDelta } from './usage-counter.js';

/**
 * KEYS: one hash per window of one identity (`...:usage:{tag}:day:2026-03-29`), all with the
 * identity's hash tag, so one call touches one hash slot (Redis Cluster). ARGV, five per key:
 * requests, input, output and total tokens to add, then the Unix ms the hash may expire at.
 * Zero amounts are not written (a read creates nothing). Returns the four totals of each key
 * after the additions, in key order.
 */
const ADD = `
local fields = {'r', 'i', 'o', 't'}
local out = {}
for k = 1, #KEYS do
  local base = (k - 1) * 5
  for f = 1, 4 do
    local n = tonumber(ARGV[base + f])
    if n ~= 0 then redis.call('HINCRBY', KEYS[k], fields[f], n) end
  end
  redis.call('PEXPIREAT', KEYS[k], ARGV[base + 5])
  local v = redis.call('HMGET', KEYS[k], 'r', 'i', 'o', 't')
  for f = 1, 4 do out[#out + 1] = tonumber(v[f]) or 0 end
end
return out`;

type ScriptedRedis = RedisClient & { csgUsageAdd(numKeys: number, ...args: Array<string | number>): Promise<number[]> };

/** A window's counts stay readable this long after it ends (a late replica's write lands in the right window). */
export const USAGE_KEY_MARGIN_MS = 86_400_000;

/**
 * Usage counters in Redis, shared by every replica: one hash per identity and window, changed
 * only by atomic HINCRBY in one script, expiring a day after its window ends. Identities appear
 * only as hashes (usage-counter.ts identityTag).
 */
export function createRedisUsageStore(options: { redis: RedisClient; namespace: string; commandTimeoutMs: number }): SharedUsageStore {
  const redis = options.redis as ScriptedRedis;
  if (typeof redis.csgUsageAdd !== 'function') options.redis.defineCommand('csgUsageAdd', { lua: ADD });
  const keyOf = (tag: string, w: WindowDelta) => `${options.namespace}:usage:{${tag}}:${w.kind}:${w.label}`;
  return {
    get available() {
      return redisReady(options.redis);
    },
    async add(tag, windows) {
      const keys = windows.map((w) => keyOf(tag, w));
      const args = windows.flatMap((w) => [w.delta.requests, w.delta.input, w.delta.output, w.delta.total, w.endsAtMs + USAGE_KEY_MARGIN_MS]);
      const flat = await withTimeout(redis.csgUsageAdd(keys.length, ...keys, ...args), options.commandTimeoutMs);
      return windows.map((_, i): Totals => ({ requests: flat[i * 4] ?? 0, input: flat[i * 4 + 1] ?? 0, output: flat[i * 4 + 2] ?? 0, total: flat[i * 4 + 3] ?? 0 }));
    },
  };
}
