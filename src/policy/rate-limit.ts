import { LRUCache } from 'lru-cache';

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export interface RateLimiter {
  /**
   * A decision made without I/O, or undefined when only the shared bucket can decide. The
   * cached hot path calls this first and stays synchronous whenever it answers.
   */
  tryTakeLocal(key: string): RateDecision | undefined;
  /** A decision; a plain value whenever `tryTakeLocal` has one, a promise only when Redis must be asked. */
  take(key: string): RateDecision | Promise<RateDecision>;
}

/** A limiter that always decides on its own, without I/O. */
export interface LocalRateLimiter extends RateLimiter {
  take(key: string): RateDecision;
  tryTakeLocal(key: string): RateDecision;
}

export const ALLOWED: RateDecision = Object.freeze({ allowed: true });

export function denied(waitMs: number): RateDecision {
  return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

/**
 * A token bucket per key (a session_name: admit.ts): `requestsPerMinute` requests, refilled
 * continuously, with a burst of the same size. Memory is bounded (the least recently seen keys
 * are dropped, which only ever forgives them). 0 turns the limit off.
 */
export function createRateLimiter(options: { requestsPerMinute: number; now?: () => number; maxKeys?: number }): LocalRateLimiter {
  const now = options.now ?? Date.now;
  const capacity = options.requestsPerMinute;
  const perMs = capacity / 60_000;
  const buckets = new LRUCache<string, Bucket>({ max: options.maxKeys ?? 100_000 });
  function take(key: string): RateDecision {
    if (capacity <= 0) return ALLOWED;
    const t = now();
    const bucket = buckets.get(key) ?? { tokens: capacity, updatedMs: t };
    bucket.tokens = Math.min(capacity, bucket.tokens + (t - bucket.updatedMs) * perMs);
    bucket.updatedMs = t;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      buckets.set(key, bucket);
      return ALLOWED;
    }
    buckets.set(key, bucket);
    return denied((1 - bucket.tokens) / perMs);
  }
  return { take, tryTakeLocal: take };
}
