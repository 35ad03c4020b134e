import { Redis } from 'ioredis';

/** Closed set: the `operation` label of coze_gateway_redis_errors_total. */
export const REDIS_OPERATIONS = ['read', 'lock', 'write', 'invalidate', 'rate_limit'] as const;
export type RedisOperation = (typeof REDIS_OPERATIONS)[number];

export interface RedisConnection {
  readonly client: Redis;
  readonly up: boolean;
  /** For /readyz: "up", or why it is down and since when. */
  describe(): string;
  /** Resolves true once connected, or false after `timeoutMs`: start-up never blocks on Redis. */
  whenReady(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * One ioredis connection, set to fail fast: no offline queue and a command timeout, so a down
 * or slow Redis costs a request at most `commandTimeoutMs` before the caller falls back to
 * memory. ioredis reconnects by itself, backing off to 2 s.
 */
export function connectRedis(url: string, options: { commandTimeoutMs: number; onStateChange?: (up: boolean) => void }): RedisConnection {
  let up = false;
  let downSince = Date.now();
  let lastError = 'not connected yet';
  const client = new Redis(url, {
    enableOfflineQueue: false,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: Math.max(1000, options.commandTimeoutMs * 4),
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  });
  const setUp = (value: boolean) => {
    if (up === value) return;
    up = value;
    if (!value) downSince = Date.now();
    options.onStateChange?.(value);
  };
  client.on('ready', () => setUp(true));
  client.on('close', () => setUp(false));
  client.on('end', () => setUp(false));
  // Only the error code is kept: a Redis URL may carry a password, and messages can echo it.
  client.on('error', (err: NodeJS.ErrnoException) => {
    lastError = err.code ?? err.name;
  });
  return {
    client,
    get up() {
      return up;
    },
    whenReady(timeoutMs) {
      if (up) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          client.off('ready', onReady);
          resolve(false);
        }, timeoutMs);
        const onReady = () => {
          clearTimeout(timer);
          resolve(true);
        };
        client.once('ready', onReady);
      });
    },
    describe() {
      return up ? 'up' : `down for ${Math.round((Date.now() - downSince) / 1000)} s (${lastError}); serving from memory`;
    },
    async close() {
      client.disconnect(false);
    },
  };
}
