import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { pino, type DestinationStream, type Logger } from 'pino';
import { createBatchedDestination } from './batched-destination.js';

export type { Logger };

/**
 * Paths that could ever hold a secret are censored by pino itself, so a careless
 * `log.info({ headers })` cannot leak a credential. The gateway logs no raw headers, bodies or
 * query strings in the first place: this list is the second line of defence. It names exact
 * paths only: wildcard paths made redaction the largest single cost of a request (bench/).
 */
export const REDACT_PATHS = [
  'authorization',
  'cookie',
  'token',
  'accessToken',
  'access_token',
  'jwt',
  'privateKey',
  'secret',
  'apiKey',
  'query',
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  'headers["set-cookie"]',
];

export interface LoggerOptions {
  level: string;
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'coze-session-gateway' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? createBatchedDestination({ fd: 1, batchBytes: LOG_BATCH_BYTES, maxDelayMs: LOG_FLUSH_INTERVAL_MS }),
  );
}

/**
 * Lines are gathered into writes of about 16 KB instead of one write per request (bench/), but
 * never held longer than 250 ms: a quiet server's lines appear at once, and a SIGKILL loses at
 * most the last quarter second (issue 16). An asynchronous write costs ~30 µs of CPU (the
 * thread pool's hand-over), so a batch is about as large as sonic-boom's own (16 KiB maxWrite)
 * and is written whole. On exit, including process.exit on a fatal error, the rest is written
 * synchronously (batched-destination.ts).
 */
export const LOG_BATCH_BYTES = 16_000;
export const LOG_FLUSH_INTERVAL_MS = 250;

const hashes = new LRUCache<string, string>({ max: 10_000 });

/** Logs carry a short hash of session_name, never the raw value (it may be a user id). */
export function sessionHash(sessionName: string): string {
  let hash = hashes.get(sessionName);
  if (hash === undefined) {
    hash = createHash('sha256').update(sessionName).digest('base64url').slice(0, 12);
    hashes.set(sessionName, hash);
  }
  return hash;
}
