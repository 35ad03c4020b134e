import { createHash, randomBytes } from 'node:crypto';
import { ReplyError } from 'ioredis';
import type { SharedTokenStore } from '../coze/token-cache.js';
import type { CozeToken } from '../coze/token-client.js';
import { keyHash, withTimeout, type RedisOperation } from './redis-client.js';
import type { RedisClient } from './redis-topology.js';
import { subscribeChannel } from './redis-wakeups.js';
import type { TokenSealer } from './token-crypto.js';

/**
 * KEYS[1] lock, KEYS[2] fence counter; ARGV[1] lock ttl ms, ARGV[2] claim (random, one per
 * mintOnce call). Returns {fence, 0} when the lock is ours, else {0, ms the lock has left}.
 * The lock's value is `fence:claim`; the claim alone names the holder, so the scripts below
 * know it by its claim, and a holder that never learnt its fence can still write or let go. A
 * claim that finds the lock already its own is a retry whose first answer was lost: it gets
 * the lock, not a wait on itself.
 */
const ACQUIRE = `
local held = redis.call('GET', KEYS[1])
if held then
  local fence, claim = string.match(held, '^(%d+):(.+)$')
  if claim == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    return {tonumber(fence), 0}
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
redis.call('SET', KEYS[1], fence .. ':' .. ARGV[2], 'PX', ARGV[1])
return {fence, 0}`;

/** KEYS[1] lock; ARGV[1] claim, ARGV[2] ttl ms. Extends the lock only while it is still ours. */
const RENEW = `
local _, claim = string.match(redis.call('GET', KEYS[1]) or '', '^(%d+):(.+)$')
if claim == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

/**
 * KEYS[1] lock; ARGV[1] claim, ARGV[2] channel, ARGV[3] session tag. A release without a
 * token (the mint failed) wakes the waiters: one of them takes the lock and mints.
 */
const RELEASE = `
local _, claim = string.match(redis.call('GET', KEYS[1]) or '', '^(%d+):(.+)$')
if claim == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0`;

/**
 * KEYS[1] token hash, KEYS[2] lock; ARGV[1] claim, ARGV[2] fingerprint, ARGV[3] sealed
 * token, ARGV[4] expiry (Unix ms), ARGV[5] channel, ARGV[6] session tag. Writes only while the
 * lock is still ours and nothing stored expires later: a holder whose lock lapsed never
 * overwrites a newer token. Either way the lock goes and the waiters are woken. Returns 1
 * when written.
 */
const WRITE = `
local fence, claim = string.match(redis.call('GET', KEYS[2]) or '', '^(%d+):(.+)$')
if claim ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[5], ARGV[6])
local stored = tonumber(redis.call('HGET', KEYS[1], 'exp') or '0')
if stored >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'data', ARGV[3], 'exp', ARGV[4], 'fence', fence)
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1`;

/** KEYS[1] token hash; ARGV[1] fingerprint. Compare-and-delete, atomic across replicas. */
const INVALIDATE = `
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

type ScriptedRedis = RedisClient & {
  csgAcquire(lock: string, fenceCounter: string, ttlMs: number, claim: string): Promise<[number, number]>;
  csgRenew(lock: string, claim: string, ttlMs: number): Promise<number>;
  csgRelease(lock: string, claim: string, channel: string, tag: string): Promise<number>;
  csgWrite(key: string, lock: string, claim: string, fingerprint: string, sealed: string, expiresAtMs: number, channel: string, tag: string): Promise<number>;
  csgInvalidate(key: string, fingerprint: string): Promise<number>;
};

function withScripts(redis: RedisClient): ScriptedRedis {
  const scripted = redis as ScriptedRedis;
  // defineCommand sends EVALSHA, and the script body once when Redis does not know it yet.
  if (typeof scripted.csgAcquire !== 'function') {
    redis.defineCommand('csgAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    redis.defineCommand('csgRenew', { numberOfKeys: 1, lua: RENEW });
    redis.defineCommand('csgRelease', { numberOfKeys: 1, lua: RELEASE });
    redis.defineCommand('csgWrite', { numberOfKeys: 2, lua: WRITE });
    redis.defineCommand('csgInvalidate', { numberOfKeys: 1, lua: INVALIDATE });
  }
  return scripted;
}

export interface RedisTokenStoreOptions {
  redis: RedisClient;
  /** A connection for pub/sub only (see RedisConnection.subscriber); it may be shared by stores. */
  subscriber: RedisClient;
  sealer: TokenSealer;
  /** `prefix:appId:baseUrlHash`: one Coze app and base URL never read another's tokens. */
  namespace: string;
  lockTtlMs: number;
  commandTimeoutMs: number;
  /**
   * While Redis is connected, a failed step of a mint is retried; only after this long without
   * any answer does the replica take Redis for down and mint alone.
   */
  giveUpAfterMs: number;
  /** A waiter re-reads at least this often, in case the message that should wake it was lost. */
  safetyPollMs?: number;
  onError?: (operation: RedisOperation, err: unknown) => void;
  /** A mint whose token could not be stored (the lock lapsed, or Redis failed). */
  onUnsharedMint?: () => void;
}

/** Redis keys name sessions by hash: user ids never appear in the keyspace. */
export function redisNamespace(prefix: string, appId: string, baseUrl: string, accountId?: string): string {
  const target = createHash('sha256').update(`${baseUrl}|${accountId ?? ''}`).digest('hex').slice(0, 12);
  return `${prefix}:${appId}:${target}`;
}

const fingerprint = (accessToken: string) => keyHash(accessToken);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const RETRY_PAUSE_MS = 25;
const DEFAULT_SAFETY_POLL_MS = 1000;
/** "Redis is down for this mint": the caller mints alone. */
const DOWN = Symbol('redis down');
/**
 * Refusals that end by themselves: a replica until the failover promotes it (READONLY,
 * MASTERDOWN, NOREPLICAS), a Redis loading its data, a busy script, a cluster moving slots or
 * electing a master. Redis 7 keeps the code first in a script's error; 6.2 wraps it in
 * `ERR Error running script ...: -CODE`.
 */
const TRANSIENT_REPLY = /^(?:ERR Error running script .*?-)?(?:READONLY|MASTERDOWN|NOREPLICAS|LOADING|BUSY|TRYAGAIN|CLUSTERDOWN)\b/s;
const refusedForGood = (err: unknown) => err instanceof ReplyError && !TRANSIENT_REPLY.test((err as Error).message);

interface Waiter {
  woken: boolean;
  notify: (() => void) | undefined;
}

/**
 * The shared level behind each replica's memory cache (issues 9 and 17): tokens sealed with
 * AES-256-GCM in a Redis hash whose TTL is the token's own `expires_in`, exactly one mint per
 * session across replicas, and an atomic compare-and-delete.
 *
 * One mint: the replica that takes the session's lock (fenced, renewed while its mint runs)
 * mints; the others wait as long as that lock lives, however long it takes. The holder's
 * write or release publishes the session on the namespace's channel, which wakes them; a slow
 * poll and the lock's own expiry cover a lost message or a holder that died. A waiter mints
 * only when it takes the lock itself: the holder is gone, or failed and let go.
 *
 * Redis down (the connection closed, or no answer for `giveUpAfterMs`) or refusing the mint's
 * commands (an error reply that no failover ends): the caller mints for itself, exactly as a
 * gateway without Redis would, and the mint is counted as unshared.
 */
export function createRedisTokenStore(options: RedisTokenStoreOptions): SharedTokenStore {
  const redis = withScripts(options.redis);
  const channel = `${options.namespace}:minted`;
  const safetyPollMs = options.safetyPollMs ?? DEFAULT_SAFETY_POLL_MS;
  const waiters = new Map<string, Set<Waiter>>();
  const wake = (set: Set<Waiter> | undefined) => {
    for (const waiter of set ?? []) {
      waiter.woken = true;
      waiter.notify?.();
    }
  };
  // '' is "wake everyone": the subscriber reconnected, and messages may have been lost meanwhile.
  subscribeChannel(options.subscriber, channel, (tag) => {
    if (tag === '') for (const set of waiters.values()) wake(set);
    else wake(waiters.get(tag));
  });

  const keys = (sessionName: string) => {
    // The hash tag keeps a session's keys in one slot, so the scripts also run on Redis Cluster.
    const tag = keyHash(sessionName);
    const base = `${options.namespace}:{${tag}}`;
    return { tag, token: `${base}:token`, lock: `${base}:lock`, fence: `${base}:fence` };
  };
  type Keys = ReturnType<typeof keys>;
  const failed = (operation: RedisOperation, err: unknown) => options.onError?.(operation, err);
  const call = <T>(command: Promise<T>) => withTimeout(command, options.commandTimeoutMs);

  async function read(k: Keys): Promise<CozeToken | undefined> {
    const sealed = await call(redis.hget(k.token, 'data'));
    return sealed ? options.sealer.open(sealed, k.token) : undefined;
  }

  /**
   * Runs one Redis step of a mint. A failure while the connection is up is most often a busy
   * machine or a Redis hiccup, not an outage: the step is retried until Redis has given no
   * answer for `giveUpAfterMs`. A closed connection is an outage at once, and so is an error
   * reply other than a transient one: Redis is up and refuses (NOPERM, OOM, WRONGTYPE), and a
   * retry would only be refused again. A transient refusal is retried but is no answer: a
   * replica answering READONLY for a whole failover must not keep the caller waiting past it.
   */
  async function step<T>(operation: RedisOperation, run: () => Promise<T>, contact: { lastAnswerMs: number }): Promise<T | typeof DOWN> {
    for (;;) {
      try {
        const result = await run();
        contact.lastAnswerMs = Date.now();
        return result;
      } catch (err) {
        failed(operation, err);
        if (refusedForGood(err) || redis.status !== 'ready' || Date.now() - contact.lastAnswerMs >= options.giveUpAfterMs) return DOWN;
        await sleep(RETRY_PAUSE_MS);
      }
    }
  }

  function enlist(tag: string): Waiter & { wait(ms: number): Promise<void>; leave(): void } {
    const waiter: Waiter = { woken: false, notify: undefined };
    let set = waiters.get(tag);
    if (!set) waiters.set(tag, (set = new Set()));
    set.add(waiter);
    return Object.assign(waiter, {
      wait(ms: number): Promise<void> {
        if (waiter.woken) return Promise.resolve();
        return new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            waiter.notify = undefined;
            resolve();
          };
          const timer = setTimeout(done, ms);
          // A server's listener keeps the process alive; a waiter's poll alone must not.
          timer.unref();
          waiter.notify = done;
        });
      },
      leave() {
        set.delete(waiter);
        if (set.size === 0 && waiters.get(tag) === set) waiters.delete(tag);
      },
    });
  }

  const release = (k: Keys, claim: string) => {
    call(redis.csgRelease(k.lock, claim, channel, k.tag)).catch((err: unknown) => failed('lock', err));
  };

  /** The lock's holder mints, renewing the lock meanwhile, and stores the token only while still holding it. */
  async function mintHolding(k: Keys, claim: string, mint: () => Promise<CozeToken>, usable: (t: CozeToken) => boolean): Promise<CozeToken> {
    const renew = setInterval(() => {
      call(redis.csgRenew(k.lock, claim, options.lockTtlMs)).catch((err: unknown) => failed('lock', err));
    }, Math.max(50, Math.floor(options.lockTtlMs / 3)));
    // The mint's own I/O keeps the process alive; the renewal alone must not.
    renew.unref();
    try {
      // Another holder may have stored a token between our read and our lock.
      const stored = await read(k).catch((err: unknown) => void failed('read', err));
      if (stored && usable(stored)) {
        release(k, claim);
        return stored;
      }
      return await mintAndStore(k, claim, mint);
    } finally {
      clearInterval(renew);
    }
  }

  /**
   * Mints and stores the token while `claim` holds the lock. The write lets go of the lock
   * itself; otherwise (not stored, a failed mint) it is let go here, waking the waiters.
   */
  async function mintAndStore(k: Keys, claim: string, mint: () => Promise<CozeToken>): Promise<CozeToken> {
    let written = false;
    try {
      const token = await mint();
      try {
        written = (await call(redis.csgWrite(k.token, k.lock, claim, fingerprint(token.accessToken), options.sealer.seal(token, k.token), token.expiresAt * 1000, channel, k.tag))) === 1;
      } catch (err) {
        failed('write', err);
      }
      if (!written) options.onUnsharedMint?.();
      return token;
    } finally {
      if (!written) release(k, claim);
    }
  }

  return {
    async mintOnce(sessionName, mint, usable, refuse) {
      const mintAlone = () => {
        options.onUnsharedMint?.();
        return mint();
      };
      const k = keys(sessionName);
      const claim = randomBytes(12).toString('base64url');
      const contact = { lastAnswerMs: Date.now() };
      // Enlisted before the first read, so a token that lands during our own round trips still wakes us.
      const waiter = enlist(k.tag);
      try {
        for (;;) {
          waiter.woken = false;
          const stored = await step('read', () => read(k), contact);
          if (stored === DOWN) return await mintAlone();
          if (stored && usable(stored)) return stored;
          // Held (the mint breaker): what another replica stored was served above; no lock now.
          const refused = refuse?.();
          if (refused) throw refused;

          const claimed = await step('lock', () => call(redis.csgAcquire(k.lock, k.fence, options.lockTtlMs, claim)), contact);
          // An acquire whose answer never came may have taken the lock all the same. Left there,
          // unrenewed and never written under, it would hold the other replicas for its whole
          // TTL: the token is written under it, or the lock let go, by claim, with no renewal
          // and no read first (Redis has just failed us: the caller has waited long enough).
          if (claimed === DOWN) return await mintAndStore(k, claim, mint);
          const [fence, lockLeftMs] = claimed;
          if (fence > 0) {
            waiter.leave();
            return await mintHolding(k, claim, mint, usable);
          }
          // Another replica holds the lock: wait for its token, its release, or the lock's expiry.
          await waiter.wait(Math.max(1, Math.min(safetyPollMs, lockLeftMs + 1)));
        }
      } finally {
        waiter.leave();
      }
    },

    async invalidateIfSame(sessionName, accessToken) {
      try {
        return (await call(redis.csgInvalidate(keys(sessionName).token, fingerprint(accessToken)))) === 1;
      } catch (err) {
        failed('invalidate', err);
        return false;
      }
    },
  };
}
