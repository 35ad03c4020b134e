import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { SharedTokenStore } from '../coze/token-cache.js';
import type { CozeToken } from '../coze/token-client.js';
import type { RedisOperation } from './redis-client.js';
import type { TokenSealer } from './token-crypto.js';

/**
 * KEYS[1] lock, KEYS[2] fence counter; ARGV[1] lock ttl ms. The fence is a counter, so every
 * holder's value is unique and later holders' values are larger.
 */
const ACQUIRE = `
local fence = redis.call('INCR', KEYS[2])
if redis.call('SET', KEYS[1], fence, 'NX', 'PX', ARGV[1]) then return fence end
return 0`;

/** KEYS[1] lock; ARGV[1] fence, ARGV[2] ttl ms. Extends the lock only while it is still ours. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

/** KEYS[1] lock; ARGV[1] fence. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * KEYS[1] token hash, KEYS[2] lock; ARGV[1] fence, ARGV[2] fingerprint, ARGV[3] sealed token,
 * ARGV[4] expiry (Unix ms). Writes only while the lock is still ours and nothing stored expires
 * later: a holder whose lock lapsed never overwrites a newer token. Returns 1 when written.
 */
const WRITE = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local stored = tonumber(redis.call('HGET', KEYS[1], 'exp') or '0')
if stored >= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'data', ARGV[3], 'exp', ARGV[4], 'fence', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[2])
return 1`;

/** KEYS[1] token hash; ARGV[1] fingerprint. Compare-and-delete, atomic across replicas. */
const INVALIDATE = `
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

interface ScriptedRedis extends Redis {
  csgAcquire(lock: string, fenceCounter: string, ttlMs: number): Promise<number>;
  csgRenew(lock: string, fence: number, ttlMs: number): Promise<number>;
  csgRelease(lock: string, fence: number): Promise<number>;
  csgWrite(key: string, lock: string, fence: number, fingerprint: string, sealed: string, expiresAtMs: number): Promise<number>;
  csgInvalidate(key: string, fingerprint: string): Promise<number>;
}

function withScripts(redis: Redis): ScriptedRedis {
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
  redis: Redis;
  sealer: TokenSealer;
  /** `prefix:appId:baseUrlHash`: one Coze app and base URL never read another's tokens. */
  namespace: string;
  lockTtlMs: number;
  /** How long a replica waits for another's mint before minting itself. */
  waitMs: number;
  onError?: (operation: RedisOperation, err: unknown) => void;
  /** A mint whose token could not be stored (the lock lapsed, or Redis failed). */
  onUnsharedMint?: () => void;
}

/** Redis keys name sessions by hash: user ids never appear in the keyspace. */
export function redisNamespace(prefix: string, appId: string, baseUrl: string, accountId?: string): string {
  const target = createHash('sha256').update(`${baseUrl}|${accountId ?? ''}`).digest('hex').slice(0, 12);
  return `${prefix}:${appId}:${target}`;
}

const fingerprint = (accessToken: string) => createHash('sha256').update(accessToken).digest('hex').slice(0, 32);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The shared level behind each replica's memory cache (issue 9): tokens sealed with
 * AES-256-GCM in a Redis hash whose TTL is the token's own `expires_in`, one mint per session
 * across replicas through a fenced `SET NX PX` lock, and an atomic compare-and-delete.
 *
 * Every Redis failure is reported and then treated as "no shared state": the caller mints
 * for itself, exactly as a gateway without Redis would. Redis can slow a request by at most
 * its command timeout, and never fail it.
 */
export function createRedisTokenStore(options: RedisTokenStoreOptions): SharedTokenStore {
  const redis = withScripts(options.redis);
  const keys = (sessionName: string) => {
    // The hash tag keeps a session's keys in one slot, so the scripts also run on Redis Cluster.
    const tag = `{${createHash('sha256').update(sessionName).digest('hex').slice(0, 32)}}`;
    return { token: `${options.namespace}:${tag}:token`, lock: `${options.namespace}:${tag}:lock`, fence: `${options.namespace}:${tag}:fence` };
  };
  const failed = (operation: RedisOperation, err: unknown) => options.onError?.(operation, err);

  async function read(sessionName: string): Promise<CozeToken | undefined> {
    const key = keys(sessionName).token;
    try {
      const sealed = await redis.hget(key, 'data');
      return sealed ? options.sealer.open(sealed, key) : undefined;
    } catch (err) {
      failed('read', err);
      throw err;
    }
  }

  /** The lock's holder mints, renewing the lock meanwhile, and stores the token only while still holding it. */
  async function mintHolding(sessionName: string, fence: number, mint: () => Promise<CozeToken>, usable: (t: CozeToken) => boolean): Promise<CozeToken> {
    const k = keys(sessionName);
    const renew = setInterval(() => {
      redis.csgRenew(k.lock, fence, options.lockTtlMs).catch((err: unknown) => failed('lock', err));
    }, Math.max(50, Math.floor(options.lockTtlMs / 3)));
    // The mint's own I/O keeps the process alive; the renewal alone must not.
    renew.unref();
    try {
      // Another holder may have stored a token between our read and our lock.
      const stored = await read(sessionName).catch(() => undefined);
      if (stored && usable(stored)) return stored;
      const token = await mint();
      let written = 0;
      try {
        written = await redis.csgWrite(k.token, k.lock, fence, fingerprint(token.accessToken), options.sealer.seal(token, k.token), token.expiresAt * 1000);
      } catch (err) {
        failed('write', err);
      }
      if (written !== 1) options.onUnsharedMint?.();
      return token;
    } finally {
      clearInterval(renew);
      redis.csgRelease(k.lock, fence).catch((err: unknown) => failed('lock', err));
    }
  }

  return {
    async mintOnce(sessionName, mint, usable) {
      const mintAlone = () => {
        options.onUnsharedMint?.();
        return mint();
      };
      let stored: CozeToken | undefined;
      try {
        stored = await read(sessionName);
      } catch {
        return mintAlone();
      }
      if (stored && usable(stored)) return stored;

      const k = keys(sessionName);
      const deadline = Date.now() + options.waitMs;
      let pause = 10;
      for (;;) {
        let fence: number;
        try {
          fence = await redis.csgAcquire(k.lock, k.fence, options.lockTtlMs);
        } catch (err) {
          failed('lock', err);
          return mintAlone();
        }
        if (fence > 0) return mintHolding(sessionName, fence, mint, usable);

        // Another replica is minting this session: wait for its token, polling with backoff.
        await sleep(pause);
        pause = Math.min(pause * 2, 100);
        try {
          stored = await read(sessionName);
        } catch {
          return mintAlone();
        }
        if (stored && usable(stored)) return stored;
        // A bounded wait: a mint that never lands is not worth failing the request for.
        if (Date.now() >= deadline) return mintAlone();
      }
    },

    async invalidateIfSame(sessionName, accessToken) {
      try {
        return (await redis.csgInvalidate(keys(sessionName).token, fingerprint(accessToken))) === 1;
      } catch (err) {
        failed('invalidate', err);
        return false;
      }
    },
  };
}
