import { keyHash, redisReady, withTimeout } from '../cache/redis-client.js';
import type { RedisClient } from '../cache/redis-topology.js';
import type { SharedUsageStore, Totals, WindowDelta } from './usage-counter.js';

/**
 * KEYS[1]: the writer's key of the identity (`...:usage:{tag}:writer:<id>`), holding the seq of
 * the last write of that replica it applied; then one hash per window of the identity
 * (`...:usage:{tag}:day:2026-03-29`). All carry the identity's hash tag, so one call touches one
 * hash slot (Redis Cluster). ARGV: the write's seq and the Unix ms the writer's key may expire
 * at, then five per window: requests, input, output and total tokens to add, and the Unix ms the
 * hash may expire at.
 *
 * A write whose answer came after the timeout may have been applied: it is sent again with the
 * same seq and deltas, and if it was, its seq is no longer above the stored one and nothing is
 * added (the counter sends an identity's writes one at a time, in seq order, so no newer one
 * can have passed it). The check and the additions are one script, so they are applied,
 * replicated and lost together. Zero amounts are not written and leave the writer's key alone
 * (a read creates nothing). Returns the four totals of each window after the write, in key
 * order, whether it was applied now or before.
 */
const ADD = `
local fresh = tonumber(ARGV[1]) > (tonumber(redis.call('GET', KEYS[1])) or 0)
local added = false
local fields = {'r', 'i', 'o', 't'}
local out = {}
for k = 2, #KEYS do
  local base = 2 + (k - 2) * 5
  for f = 1, 4 do
    local n = tonumber(ARGV[base + f])
    if fresh and n ~= 0 then
      redis.call('HINCRBY', KEYS[k], fields[f], n)
      added = true
    end
  end
  redis.call('PEXPIREAT', KEYS[k], ARGV[base + 5])
  local v = redis.call('HMGET', KEYS[k], 'r', 'i', 'o', 't')
  for f = 1, 4 do out[#out + 1] = tonumber(v[f]) or 0 end
end
if added then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return out`;

type ScriptedRedis = RedisClient & { csgUsageAdd(numKeys: number, ...args: Array<string | number>): Promise<number[]> };

/** A window's counts stay readable this long after it ends (a late replica's write lands in the right window). */
export const USAGE_KEY_MARGIN_MS = 86_400_000;
/**
 * How long a counted chat or run id stays claimed: its polls and retrieves come within minutes;
 * a day bounds the keys to one per chat a day.
 */
export const CLAIM_TTL_MS = 86_400_000;

/**
 * Usage counters in Redis, shared by every replica: one hash per identity and window, changed
 * only by atomic HINCRBY in one script, expiring a day after its window ends; and per identity
 * and replica, the seq of its last write applied, which expires with the latest window that
 * write touched (while any of them is kept, a write sent again is not added twice). Identities
 * appear only as hashes (usage-counter.ts identityTag).
 */
export function createRedisUsageStore(options: { redis: RedisClient; namespace: string; commandTimeoutMs: number }): SharedUsageStore {
  const redis = options.redis as ScriptedRedis;
  if (typeof redis.csgUsageAdd !== 'function') options.redis.defineCommand('csgUsageAdd', { lua: ADD });
  const keyOf = (tag: string, w: WindowDelta) => `${options.namespace}:usage:{${tag}}:${w.kind}:${w.label}`;
  const expiresAt = (w: WindowDelta) => w.endsAtMs + USAGE_KEY_MARGIN_MS;
  const claimKey = (tag: string, id: string) => `${options.namespace}:usage:{${tag}}:seen:${keyHash(id)}`;
  return {
    get available() {
      return redisReady(options.redis);
    },
    async claimOnce(tag, id) {
      return (await withTimeout(options.redis.set(claimKey(tag, id), '1', 'PX', CLAIM_TTL_MS, 'NX'), options.commandTimeoutMs)) === 'OK';
    },
    async isClaimed(tag, id) {
      return (await withTimeout(options.redis.exists(claimKey(tag, id)), options.commandTimeoutMs)) === 1;
    },
    async add(tag, stamp, windows) {
      const keys = [`${options.namespace}:usage:{${tag}}:writer:${stamp.writer}`, ...windows.map((w) => keyOf(tag, w))];
      const args = [stamp.seq, Math.max(...windows.map(expiresAt)), ...windows.flatMap((w) => [w.delta.requests, w.delta.input, w.delta.output, w.delta.total, expiresAt(w)])];
      const flat = await withTimeout(redis.csgUsageAdd(keys.length, ...keys, ...args), options.commandTimeoutMs);
      return windows.map((_, i): Totals => ({ requests: flat[i * 4] ?? 0, input: flat[i * 4 + 1] ?? 0, output: flat[i * 4 + 2] ?? 0, total: flat[i * 4 + 3] ?? 0 }));
    },
  };
}
