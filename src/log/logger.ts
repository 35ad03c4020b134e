import { createHmac, createPrivateKey, hkdfSync } from 'node:crypto';
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

/** Session pseudonyms remembered per gateway: a session's requests hash it once, not per line. */
const SESSION_HASHES_KEPT = 10_000;

/**
 * The log's pseudonym of a session_name: HMAC-SHA256 under `key`, base64url, 12 characters. An
 * unkeyed hash of "alice" would be the same on every deployment and reversed by hashing a list
 * of user ids; keyed, it means nothing without the key, yet stays the same on every replica of
 * one deployment, so one user's lines can still be followed across them.
 */
export function createSessionHasher(key: Uint8Array): (sessionName: string) => string {
  const hashes = new LRUCache<string, string>({ max: SESSION_HASHES_KEPT });
  return (sessionName) => {
    let hash = hashes.get(sessionName);
    if (hash === undefined) {
      hash = createHmac('sha256', key).update(sessionName).digest('base64url').slice(0, 12);
      hashes.set(sessionName, hash);
    }
    return hash;
  };
}

const SESSION_HASH_INFO = 'coze-session-gateway log session pseudonym v1';

/**
 * The pseudonym key, derived (HKDF-SHA256) from the Coze app's private key: every replica of a
 * deployment has that key and nothing new must be configured, while another deployment (another
 * OAuth app) gets other pseudonyms. The key is read as PKCS#8 DER, so PKCS#1 and PKCS#8 PEMs of
 * one key agree; HKDF is one-way, so the pseudonym key tells nothing about the private key.
 * Rotating the Coze key changes the pseudonyms (docs/security.md).
 */
export function sessionHashKey(privateKeyPem: string): Buffer {
  const der = createPrivateKey({ key: privateKeyPem, format: 'pem' }).export({ type: 'pkcs8', format: 'der' });
  return Buffer.from(hkdfSync('sha256', der, '', SESSION_HASH_INFO, 32));
}

