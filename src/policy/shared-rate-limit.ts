import { LRUCache } from 'lru-cache';
import { keyHash, redisReady, withTimeout } from '../cache/redis-client.js';
import type { RedisClient } from '../cache/redis-topology.js';
import { ALLOWED, denied, type LocalRateLimiter, type RateDecision, type RateLimiter } from './rate-limit.js';

/**
 * KEYS[1] bucket; ARGV[1] capacity (requests per minute), ARGV[2] wanted, ARGV[3] returned.
 * The session's token bucket, shared by every replica and refilled by Redis's own clock, so
 * replicas with skewed clocks agree. It takes back `returned` unused tokens (never above
 * capacity), then grants min(wanted, whole tokens available) at once. Returns {granted, 0},
 * or {0, ms until one token is available}.
 */
const LEASE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local perMs = capacity / 60000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * perMs + tonumber(ARGV[3]))
local granted = math.max(0, math.min(tonumber(ARGV[2]), math.floor(tokens)))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 61000)
if granted > 0 then return {granted, 0} end
return {0, math.ceil((1 - tokens) / perMs)}`;

type ScriptedRedis = RedisClient & {
  csgRateLease(bucket: string, capacity: number, wanted: number, returned: number): Promise<[number, number]>;
};

/** No lease is larger than this, whatever the limit. */
const MAX_LEASE = 1000;
/** Allowance not spent within this is handed back with the next lease, or forgotten. */
export const LEASE_TTL_MS = 1000;

/**
 * The largest lease for a limit: 1% of it, so below 200 requests per minute every request is
 * decided by Redis (exact), and never above MAX_LEASE. See the accuracy bound in
 * docs/deployment.md.
 */
export function maxLease(requestsPerMinute: number): number {
  return Math.max(1, Math.min(MAX_LEASE, Math.floor(requestsPerMinute / 100)));
}

interface Lease {
  /** Requests this replica may still admit without asking Redis, until `expiresAtMs`. */
  allowance: number;
  expiresAtMs: number;
  /** The size of the last grant: the next lease doubles it when it was used up. */
  granted: number;
  /** Redis said the bucket is empty until then: callers are refused without asking again. */
  deniedUntilMs: number;
  /** The lease request in flight, which other callers wait for instead of sending their own. */
  pending: Promise<boolean> | undefined;
  /** Callers that found no allowance since the last lease request: the next one asks for them. */
  demand: number;
}

/**
 * The per-session limit shared by every replica (issues 9 and 17), decided locally most of the
 * time. A replica leases a batch of allowance from the session's Redis bucket (one atomic
 * script) and spends it in memory: a request finding allowance is decided synchronously,
 * without a round trip. Leases start at one request and double while they are used up within
 * LEASE_TTL_MS, up to `maxLease`; what is left when a lease expires goes back to the bucket
 * with the next lease. A refusal from Redis is remembered until the bucket refills, so a caller
 * over its limit costs no round trip either.
 *
 * When Redis is down or fails, `local` (this replica's own bucket) decides instead: the limit
 * becomes per replica for a while, and no request is refused because Redis is down.
 */
export function createSharedRateLimiter(options: {
  requestsPerMinute: number;
  redis: RedisClient;
  namespace: string;
  local: LocalRateLimiter;
  commandTimeoutMs: number;
  now?: () => number;
  maxKeys?: number;
  onError?: (err: unknown) => void;
}): RateLimiter {
  const redis = options.redis as ScriptedRedis;
  if (typeof redis.csgRateLease !== 'function') options.redis.defineCommand('csgRateLease', { numberOfKeys: 1, lua: LEASE });
  const now = options.now ?? Date.now;
  const capacity = options.requestsPerMinute;
  const largest = maxLease(capacity);
  const leases = new LRUCache<string, Lease>({ max: options.maxKeys ?? 100_000 });
  // Identities are hashed: user ids never appear in the keyspace.
  const bucketOf = (key: string) => `${options.namespace}:rate:{${keyHash(key)}}`;

  function tryTakeLocal(key: string): RateDecision | undefined {
    if (capacity <= 0) return ALLOWED;
    // Redis down: this replica's own bucket, at once, rather than a failing call per request.
    if (!redisReady(redis)) return options.local.take(key);
    const lease = leases.get(key);
    if (!lease) return undefined;
    const t = now();
    if (lease.allowance >= 1 && t < lease.expiresAtMs) {
      lease.allowance -= 1;
      return ALLOWED;
    }
    return t < lease.deniedUntilMs ? denied(lease.deniedUntilMs - t) : undefined;
  }

  /** Asks the bucket for the next lease. False when Redis failed. */
  async function refill(key: string, lease: Lease): Promise<boolean> {
    // An unexpired lease is only refilled once it is used up: demand outran it, so the next one
    // is twice the size. An expired one hands back its rest, and the next is what it served.
    const returned = lease.allowance;
    const usedUp = returned === 0 && now() < lease.expiresAtMs;
    const wanted = Math.min(largest, Math.max(1, lease.demand, usedUp ? lease.granted * 2 : lease.granted - returned));
    lease.allowance = 0;
    lease.demand = 0;
    try {
      const [granted, waitMs] = await withTimeout(redis.csgRateLease(bucketOf(key), capacity, wanted, returned), options.commandTimeoutMs);
      const t = now();
      lease.granted = granted;
      lease.allowance = granted;
      lease.expiresAtMs = t + LEASE_TTL_MS;
      lease.deniedUntilMs = granted > 0 ? 0 : t + waitMs;
      return true;
    } catch (err) {
      options.onError?.(err);
      return false;
    } finally {
      lease.pending = undefined;
    }
  }

  async function takeShared(key: string): Promise<RateDecision> {
    for (;;) {
      let lease = leases.get(key);
      if (!lease) leases.set(key, (lease = { allowance: 0, expiresAtMs: 0, granted: 0, deniedUntilMs: 0, pending: undefined, demand: 0 }));
      lease.demand += 1;
      lease.pending ??= refill(key, lease);
      if (!(await lease.pending)) return options.local.take(key);
      // The fresh lease is spent without its expiry check: it was granted for these callers.
      if (lease.allowance >= 1) {
        lease.allowance -= 1;
        return ALLOWED;
      }
      const t = now();
      if (t < lease.deniedUntilMs) return denied(lease.deniedUntilMs - t);
      // More callers waited than the lease granted: the rest ask again.
    }
  }

  return {
    tryTakeLocal,
    take: (key) => tryTakeLocal(key) ?? takeShared(key),
  };
}
