import { createHash } from 'node:crypto';
import { Cluster, type Redis } from 'ioredis';
import type { RedisClient, RedisTopology } from './redis-topology.js';

/** Closed set: the `operation` label of coze_gateway_redis_errors_total. */
export const REDIS_OPERATIONS = ['read', 'lock', 'write', 'invalidate', 'rate_limit', 'usage'] as const;
export type RedisOperation = (typeof REDIS_OPERATIONS)[number];

export interface RedisConnection {
  readonly topology: RedisTopology;
  readonly client: RedisClient;
  /**
   * A second connection for pub/sub (a subscribed connection can send no other command):
   * replicas waiting for another's mint are woken through it.
   */
  readonly subscriber: RedisClient;
  readonly up: boolean;
  /** For /readyz: "up (where)", or why it is down and since when. Never a credential. */
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
 * How an identity or a session_name appears in Redis keys: 128 bits of its SHA-256, never in
 * clear. In braces it is the Cluster hash tag, so all keys of one identity share a slot.
 */
export const keyHash = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 32);

/**
 * True while commands can be sent. A socket the peer closed stops being writable a few turns
 * before ioredis's status changes; a Cluster client has no single socket.
 */
export function redisReady(client: RedisClient): boolean {
  return client.status === 'ready' && !('stream' in client && (client.stream as { writable?: boolean } | undefined)?.writable === false);
}

/**
 * Two ioredis clients on the configured topology, set to fail fast: no offline queue, so a
 * down Redis fails a command at once and the caller falls back to memory. Commands are bounded
 * by `withTimeout` rather than ioredis's `commandTimeout`, whose timer fires before a busy loop
 * reads the answer. ioredis reconnects by itself, backing off to 2 s; on Sentinel it asks the
 * Sentinels for the master again each time, which is how a failover is followed.
 */
export function connectRedis(topology: RedisTopology, options: { commandTimeoutMs: number; onStateChange?: (up: boolean) => void }): RedisConnection {
  let up = false;
  let downSince = Date.now();
  let lastError = 'not connected yet';
  const failFast = {
    connectTimeoutMs: Math.max(1000, options.commandTimeoutMs * 4),
    retryDelayMs: (attempt: number) => Math.min(100 * 2 ** Math.min(attempt, 5), 2000),
  };
  const client = topology.createClient(failFast);
  // On a Cluster, pub/sub runs on a connection of its own to one node; PUBLISH reaches every
  // node's subscribers (Redis 7's classic pub/sub is cluster-wide), so any node will do.
  const subscriber = topology.createClient(failFast);
  const waiting = new Set<() => void>();
  const setUp = (value: boolean) => {
    if (up === value) return;
    up = value;
    if (value) lastError = '';
    else downSince = Date.now();
    options.onStateChange?.(value);
    if (!value) return;
    for (const onUp of waiting) onUp();
    waiting.clear();
  };
  // A cluster is up once every master's connection is: with no offline queue, a command for a
  // node whose connection is still being opened is refused, and nodes connect lazily.
  client.on('ready', () => (client instanceof Cluster ? void mastersConnected(client, failFast.connectTimeoutMs).then(() => client.status === 'ready' && setUp(true)) : setUp(true)));
  // A master that goes away cleanly (shut down, failed over) closes without an error event:
  // the reason shown is then the close itself, not the start-up placeholder.
  client.on('close', () => {
    if (!lastError) lastError = 'CONNECTION_CLOSED';
    setUp(false);
  });
  client.on('end', () => setUp(false));
  // Only a code is kept: a Redis URL may carry a password, and messages can echo it.
  client.on('error', (err: NodeJS.ErrnoException) => {
    lastError = errorCode(err);
  });
  if (client instanceof Cluster) {
    // A cluster reports a node it cannot reach here; the cluster as a whole may still answer.
    client.on('node error', (err: NodeJS.ErrnoException) => {
      lastError = errorCode(err);
    });
    // Each node the layout names is connected at once rather than on its first command.
    client.on('+node', (node: Redis) => {
      if (node.status === 'wait') node.connect().catch(() => undefined);
    });
  }
  // The command connection's state is the one reported; a subscriber error is only not thrown.
  subscriber.on('error', () => undefined);
  // ioredis gives a client up for good ('end') when a reconnect it had started is cut short,
  // which its Sentinel failover detector does when +switch-master arrives mid-reconnect (seen
  // under load: replicas stayed on memory after a failover). Only close() may end a client here.
  let closing = false;
  for (const c of [client, subscriber]) {
    c.on('end', () => {
      if (closing) return;
      setTimeout(() => {
        if (!closing && c.status === 'end') c.connect().catch(() => undefined);
      }, failFast.retryDelayMs(1)).unref();
    });
  }
  return {
    topology,
    client,
    subscriber,
    get up() {
      return up;
    },
    whenReady(timeoutMs) {
      if (up) return Promise.resolve(true);
      return new Promise((resolve) => {
        const onUp = () => {
          clearTimeout(timer);
          resolve(true);
        };
        const timer = setTimeout(() => {
          waiting.delete(onUp);
          resolve(false);
        }, timeoutMs);
        waiting.add(onUp);
      });
    },
    describe() {
      if (up) return `up (${where(topology, client)})`;
      return `down for ${Math.round((Date.now() - downSince) / 1000)} s (${lastError}); serving from memory`;
    },
    async close() {
      closing = true;
      client.disconnect();
      subscriber.disconnect();
    },
  };
}

/** Resolves once every master of the cluster is connected, or after `timeoutMs`. */
function mastersConnected(cluster: Cluster, timeoutMs: number): Promise<void> {
  const pending = cluster.nodes('master').filter((node) => node.status !== 'ready');
  if (pending.length === 0) return Promise.resolve();
  return new Promise((resolve) => {
    let left = pending.length;
    const timer = setTimeout(resolve, timeoutMs);
    const done = () => {
      if (--left === 0) {
        clearTimeout(timer);
        resolve();
      }
    };
    for (const node of pending) {
      node.once('ready', done);
      if (node.status === 'wait') node.connect().catch(() => undefined);
    }
  });
}

/** A code safe to show: a system or TLS error code, a Redis error prefix (WRONGPASS, NOPERM, CLUSTERDOWN...), or the error's class. */
function errorCode(err: NodeJS.ErrnoException): string {
  return err.code ?? /^([A-Z][A-Z_]{2,})\b/.exec(err.message)?.[1] ?? err.name;
}

/** Where a connected client is: the master a Sentinel named, or how many masters a cluster has. */
function where(topology: RedisTopology, client: RedisClient): string {
  if (client instanceof Cluster) return `${topology.label}: ${client.nodes('master').length} masters`;
  const stream = client.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  if (topology.kind === 'sentinel' && stream?.remoteAddress) return `${topology.label}: master ${stream.remoteAddress}:${stream.remotePort}`;
  return topology.label;
}
