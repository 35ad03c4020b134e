import { LRUCache } from 'lru-cache';
import type { Maybe } from '../maybe.js';
import type { CozeToken } from './token-client.js';
import { TokenMintError } from './token-client.js';

/** Closed set of lookup results: the `result` label of coze_gateway_token_cache_requests_total. */
export const CACHE_RESULTS = ['hit', 'stale', 'miss', 'coalesced'] as const;
export type CacheResult = (typeof CACHE_RESULTS)[number];

export interface TokenLookup {
  token: CozeToken;
  result: CacheResult;
}

/**
 * A level shared by every replica (Redis, issue 9). This cache stays the first level in
 * front of it: a hit never leaves the process.
 */
export interface SharedTokenStore {
  /**
   * The token of `sessionName` as some replica minted it: a stored one when `usable`, else one
   * minted through a cross-replica lock, by this replica (`mint`) or by another that held it.
   * `refuse` is asked once no usable token is stored, before the lock: a held mint still
   * serves what another replica stored, and takes no lock.
   */
  mintOnce(sessionName: string, mint: () => Promise<CozeToken>, usable: (token: CozeToken) => boolean, refuse?: () => Error | undefined): Promise<CozeToken>;
  /** Compare-and-delete across replicas; false when another token is stored (or none). */
  invalidateIfSame(sessionName: string, accessToken: string): Promise<boolean>;
}

export interface TokenCacheOptions {
  mint: (sessionName: string) => Promise<CozeToken>;
  /**
   * Why a mint of this session would fail now without reaching Coze (the mint breaker's hold):
   * asked before a mint starts (with a shared level, after its read), so a held mint takes no
   * Redis lock and wakes no other replica.
   */
  refuse?: (sessionName: string) => Error | undefined;
  shared?: SharedTokenStore;
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
  /** The session's token: a plain value when a fresh (or stale but usable) one is cached, a promise when it must wait for a mint. */
  lookup(sessionName: string): Maybe<TokenLookup>;
  /**
   * Drops the entry only if it still holds `accessToken`, so a racer never drops a newer token;
   * with a shared level, there too. Resolves whether it was dropped here or there.
   */
  invalidateIfSame(sessionName: string, accessToken: string): Promise<boolean>;
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
  /** ms; no background refresh starts before it (the last one failed). */
  retryAtMs: number;
  refreshFailures: number;
}

/** A token this close to expiry is not handed out: the request would outlive it. */
const MIN_REMAINING_MS = 5000;
const JITTER_RATIO = 0.1;
/** What a mint may take, on top of the reserve, for a fresh token still to clear `sharedUsable`. */
const MINT_ALLOWANCE_MS = 30_000;
/** After a failed background refresh, the next waits this long, doubling per failure up to the max. */
const REFRESH_RETRY_BASE_MS = 2000;
const REFRESH_RETRY_MAX_MS = 30_000;
/** Tokens Coze called invalid, remembered so Redis never hands one back (see sharedUsable). */
const MAX_REVOKED = 1024;

/**
 * The largest coze.refreshBeforeSeconds for a token lifetime: past it a fresh token is already
 * stale, and one read from another replica never usable, so every replica mints in turn.
 */
export function maxRefreshBeforeSeconds(tokenTtlSeconds: number): number {
  return Math.max(0, Math.floor((tokenTtlSeconds * 1000 - MIN_REMAINING_MS - MINT_ALLOWANCE_MS) / 1000 / (1 + JITTER_RATIO)));
}

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
  const revoked = new LRUCache<string, true>({ max: MAX_REVOKED });

  function store(sessionName: string, token: CozeToken): void {
    const expiresAtMs = token.expiresAt * 1000;
    // Jitter spreads the refreshes of tokens minted in one burst.
    const refreshAtMs = Math.max(now(), expiresAtMs - refreshBeforeMs * (1 + JITTER_RATIO * random()));
    entries.set(sessionName, { token, refreshAtMs, expiresAtMs, retryAtMs: 0, refreshFailures: 0 });
  }

  /**
   * A shared token is taken only when it is fresher than the earliest point this cache could
   * have started refreshing (refreshBefore plus the whole jitter); otherwise a refresh would be
   * answered with the very token it is replacing. Nor is one this replica saw revoked: Redis
   * still holds it when the compare-and-delete failed there.
   */
  const sharedUsable = (token: CozeToken) => token.expiresAt * 1000 - now() > refreshBeforeMs * (1 + JITTER_RATIO) + MIN_REMAINING_MS && !revoked.has(token.accessToken);

  function startMint(sessionName: string): Promise<CozeToken> {
    const refuse = options.refuse;
    let minted: Promise<CozeToken>;
    if (options.shared) {
      minted = options.shared.mintOnce(sessionName, () => options.mint(sessionName), sharedUsable, refuse && (() => refuse(sessionName)));
    } else {
      const refused = refuse?.(sessionName);
      minted = refused ? Promise.reject(refused) : options.mint(sessionName);
    }
    const pending = minted
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

  /** The stale entry keeps being served; its next refresh waits, so a failing one is not retried per request. */
  function refreshFailed(sessionName: string, entry: Entry, err: unknown): void {
    if (entries.peek(sessionName) === entry) {
      entry.refreshFailures += 1;
      entry.retryAtMs = now() + Math.min(REFRESH_RETRY_MAX_MS, REFRESH_RETRY_BASE_MS * 2 ** (entry.refreshFailures - 1));
    }
    options.onBackgroundRefreshError?.(sessionName, err);
  }

  function report(result: CacheResult): void {
    options.onLookup?.(result);
  }

  /** A hit keeps one frozen lookup per token, so the cached path allocates nothing here. */
  const hits = new WeakMap<CozeToken, TokenLookup>();
  function hit(token: CozeToken): TokenLookup {
    let found = hits.get(token);
    if (!found) hits.set(token, (found = Object.freeze({ token, result: 'hit' as const })));
    return found;
  }

  function lookup(sessionName: string): Maybe<TokenLookup> {
    const entry = entries.get(sessionName);
    const t = now();
    if (entry && t < entry.refreshAtMs && t < entry.expiresAtMs - MIN_REMAINING_MS) {
      report('hit');
      return hit(entry.token);
    }
    const pending = inflight.get(sessionName);
    if (entry && t < entry.expiresAtMs - MIN_REMAINING_MS) {
      if (!pending && t >= entry.retryAtMs) {
        startMint(sessionName).catch((err: unknown) => refreshFailed(sessionName, entry, err));
      }
      report('stale');
      return { token: entry.token, result: 'stale' };
    }
    if (pending) {
      report('coalesced');
      return waitFor(pending).then((token) => ({ token, result: 'coalesced' }));
    }
    report('miss');
    return waitFor(startMint(sessionName)).then((token) => ({ token, result: 'miss' }));
  }

  return {
    lookup,

    async invalidateIfSame(sessionName: string, accessToken: string): Promise<boolean> {
      const entry = entries.peek(sessionName);
      const dropped = entry !== undefined && entry.token.accessToken === accessToken;
      if (dropped) {
        entries.delete(sessionName);
        // Only a token this replica held: a caller naming any string must not flush the set.
        revoked.set(accessToken, true);
      }
      // Awaited: the re-mint that follows must not read the revoked token back from Redis.
      const droppedShared = options.shared ? await options.shared.invalidateIfSame(sessionName, accessToken) : false;
      return dropped || droppedShared;
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
