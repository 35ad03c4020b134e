import { LRUCache } from 'lru-cache';
import type { CozeToken } from './token-client.js';
import { TokenMintError } from './token-client.js';

/** Closed set of lookup results: the `result` label of coze_gateway_token_cache_requests_total. */
export const CACHE_RESULTS = ['hit', 'stale', 'miss', 'coalesced'] as const;
export type CacheResult = (typeof CACHE_RESULTS)[number];

export interface TokenLookup {
  token: CozeToken;
  result: CacheResult;
}

export interface TokenCacheOptions {
  mint: (sessionName: string) => Promise<CozeToken>;
  maxEntries: number;
  refreshBeforeSeconds: number;
  /** A caller never waits longer than this for a mint; the mint itself runs on and lands in the cache. */
  waitTimeoutMs: number;
  now?: () => number;
  random?: () => number;
  onLookup?: (result: CacheResult) => void;
  onBackgroundRefreshError?: (sessionName: string, err: unknown) => void;
}

export interface TokenCache {
  get(sessionName: string): Promise<TokenLookup>;
  /** Drops the entry only if it still holds `accessToken`, so a racer never drops a newer token. */
  invalidateIfSame(sessionName: string, accessToken: string): boolean;
  /** The cached token without any side effect (vending compares old_token with it). */
  peek(sessionName: string): CozeToken | undefined;
  readonly size: number;
  readonly inflight: number;
}

interface Entry {
  token: CozeToken;
  /** ms; past it the token is stale: still served, while one background refresh runs. */
  refreshAtMs: number;
  /** ms; past it the token is never served. */
  expiresAtMs: number;
}

/** A token this close to expiry is not handed out: the request would outlive it. */
const MIN_REMAINING_MS = 5000;
const JITTER_RATIO = 0.1;

/**
 * One token per session_name, minted as rarely as possible and never twice at once.
 *
 * LRUCache is the bounded store. The freshness rules live here rather than in lru-cache's
 * fetch(): they need two thresholds (refresh-at and hard expiry), a compare-and-delete that
 * must not cancel a mint in flight, and a clock that tests can advance at will.
 */
export function createTokenCache(options: TokenCacheOptions): TokenCache {
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const entries = new LRUCache<string, Entry>({ max: options.maxEntries });
  const inflight = new Map<string, Promise<CozeToken>>();
  const refreshBeforeMs = options.refreshBeforeSeconds * 1000;

  function store(sessionName: string, token: CozeToken): void {
    const expiresAtMs = token.expiresAt * 1000;
    // Jitter spreads the refreshes of tokens minted in one burst.
    const refreshAtMs = Math.max(now(), expiresAtMs - refreshBeforeMs * (1 + JITTER_RATIO * random()));
    entries.set(sessionName, { token, refreshAtMs, expiresAtMs });
  }

  function startMint(sessionName: string): Promise<CozeToken> {
    const pending = options
      .mint(sessionName)
      .then((token) => {
        store(sessionName, token);
        return token;
      })
      .finally(() => inflight.delete(sessionName));
    inflight.set(sessionName, pending);
    return pending;
  }

  function waitFor(pending: Promise<CozeToken>): Promise<CozeToken> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new TokenMintError({ outcome: 'timeout', attempts: 0, message: 'waiting for the token mint in flight timed out' })),
        options.waitTimeoutMs,
      );
    });
    return Promise.race([pending, timeout]).finally(() => clearTimeout(timer));
  }

  function report(result: CacheResult): void {
    options.onLookup?.(result);
  }

  return {
    async get(sessionName: string): Promise<TokenLookup> {
      const entry = entries.get(sessionName);
      const t = now();
      if (entry && t < entry.refreshAtMs && t < entry.expiresAtMs - MIN_REMAINING_MS) {
        report('hit');
        return { token: entry.token, result: 'hit' };
      }
      const pending = inflight.get(sessionName);
      if (entry && t < entry.expiresAtMs - MIN_REMAINING_MS) {
        if (!pending) {
          startMint(sessionName).catch((err: unknown) => options.onBackgroundRefreshError?.(sessionName, err));
        }
        report('stale');
        return { token: entry.token, result: 'stale' };
      }
      if (pending) {
        report('coalesced');
        return { token: await waitFor(pending), result: 'coalesced' };
      }
      report('miss');
      return { token: await waitFor(startMint(sessionName)), result: 'miss' };
    },

    invalidateIfSame(sessionName: string, accessToken: string): boolean {
      const entry = entries.peek(sessionName);
      if (!entry || entry.token.accessToken !== accessToken) return false;
      entries.delete(sessionName);
      return true;
    },

    peek(sessionName: string): CozeToken | undefined {
      const entry = entries.peek(sessionName);
      return entry && now() < entry.expiresAtMs ? entry.token : undefined;
    },

    get size() {
      return entries.size;
    },

    get inflight() {
      return inflight.size;
    },
  };
}
