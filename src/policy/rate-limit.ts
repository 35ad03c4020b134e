import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export interface RateLimiter {
  take(key: string): RateDecision | Promise<RateDecision>;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

/**
 * A token bucket per identity: `requestsPerMinute` requests, refilled continuously, with a
 * burst of the same size. Memory is bounded (the least recently seen identities are dropped,
 * which only ever forgives them). 0 turns the limit off.
 */
export function createRateLimiter(options: { requestsPerMinute: number; now?: () => number; maxKeys?: number }): { take(key: string): RateDecision } {
  const now = options.now ?? Date.now;
  const capacity = options.requestsPerMinute;
  const perMs = capacity / 60_000;
  const buckets = new LRUCache<string, Bucket>({ max: options.maxKeys ?? 100_000 });
  return {
    take(key) {
      if (capacity <= 0) return { allowed: true };
      const t = now();
      const bucket = buckets.get(key) ?? { tokens: capacity, updatedMs: t };
      bucket.tokens = Math.min(capacity, bucket.tokens + (t - bucket.updatedMs) * perMs);
      bucket.updatedMs = t;
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        buckets.set(key, bucket);
        return { allowed: true };
      }
      buckets.set(key, bucket);
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000)) };
    },
  };
}

/**
 * The same token bucket in Redis, one per identity for all replicas. Redis's own clock
 * refills it, so replicas with skewed clocks agree. KEYS[1] bucket; ARGV[1] capacity.
 * Returns {1, 0} when allowed, else {0, ms until one request is allowed}.
 */
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local perMs = capacity / 60000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * perMs)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 61000)
if allowed == 1 then return {1, 0} end
return {0, math.ceil((1 - tokens) / perMs)}`;

interface ScriptedRedis extends Redis {
  csgRateTake(key: string, capacity: number): Promise<[number, number]>;
}

/**
 * The per-identity limit shared by every replica (issue 9). When Redis fails, `local` (this
 * replica's own bucket) decides instead: the limit becomes per replica for a while, and no
 * request is refused because Redis is down.
 */
export function createSharedRateLimiter(options: {
  requestsPerMinute: number;
  redis: Redis;
  namespace: string;
  local: RateLimiter;
  onError?: (err: unknown) => void;
}): RateLimiter {
  const redis = options.redis as ScriptedRedis;
  if (typeof redis.csgRateTake !== 'function') options.redis.defineCommand('csgRateTake', { numberOfKeys: 1, lua: TAKE });
  const capacity = options.requestsPerMinute;
  return {
    async take(key) {
      if (capacity <= 0) return { allowed: true };
      // Identities are hashed: user ids never appear in the keyspace.
      const bucket = `${options.namespace}:rate:{${createHash('sha256').update(key).digest('hex').slice(0, 32)}}`;
      try {
        const [allowed, waitMs] = await redis.csgRateTake(bucket, capacity);
        return allowed === 1 ? { allowed: true } : { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
      } catch (err) {
        options.onError?.(err);
        return options.local.take(key);
      }
    },
  };
}
