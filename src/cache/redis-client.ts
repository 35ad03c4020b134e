import { Redis } from 'ioredis';

/** Closed set: the `operation` label of coze_gateway_redis_errors_total. */
export const REDIS_OPERATIONS = ['read', 'lock', 'write', 'invalidate', 'rate_limit'] as const;
export type RedisOperation = (typeof REDIS_OPERATIONS)[number];

export interface RedisConnection {
  readonly client: Redis;
  /**
   * A second connection for pub/sub (a subscribed connection can send no other command):
   * replicas waiting for another's mint are woken through it.
   */
  readonly subscriber: Redis;
  readonly up: boolean;
  /** For /readyz: "up", or why it is down and since when. */
  describe(): string;
  /** Resolves true once connected, or false after `timeoutMs`: start-up never blocks on Redis. */
  whenReady(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export class RedisTimeoutError extends Error {
  constructor(ms: number) {
    super(`Redis did not answer within ${ms} ms`);
    this.name = 'RedisTimeoutError';
  }
}

/**
 * `call`, or a RedisTimeoutError when no answer came within `ms`. The verdict waits for the
 * event loop's next I/O phase (setImmediate runs after it), so an answer that arrived while
 * this process was busy is read before the timer can call it late. A late timer on a loaded
 * machine is not a slow Redis; treating it as one turned load into duplicate mints (issue 17).
 */
export function withTimeout<T>(call: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (settled) return;
        settled = true;
        reject(new RedisTimeoutError(ms));
      });
    }, ms);
    call.then(
      (value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/**
 * Two ioredis connections, set to fail fast: no offline queue, so a down Redis fails a command
 * at once and the caller falls back to memory. Commands are bounded by `withTimeout` rather
 * than ioredis's `commandTimeout`, whose timer fires before a busy loop reads the answer.
 * ioredis reconnects by itself, backing off to 2 s.
 */
export function connectRedis(url: string, options: { commandTimeoutMs: number; onStateChange?: (up: boolean) => void }): RedisConnection {
  let up = false;
  let downSince = Date.now();
  let lastError = 'not connected yet';
  const client = new Redis(url, {
    enableOfflineQueue: false,
    connectTimeout: Math.max(1000, options.commandTimeoutMs * 4),
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  });
  const subscriber = client.duplicate();
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
  // The command connection's state is the one reported; a subscriber error is only not thrown.
  subscriber.on('error', () => undefined);
  return {
    client,
    subscriber,
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
      subscriber.disconnect(false);
    },
  };
}
