import { LRUCache } from 'lru-cache';

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

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
