import { createHash } from 'node:crypto';
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Paths that could ever hold a secret are censored by pino itself, so a careless
 * `log.info({ headers })` cannot leak a credential. The gateway logs no raw headers, bodies or
 * query strings in the first place: this list is the second line of defence.
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
  '*.authorization',
  '*.cookie',
  '*.token',
  '*.accessToken',
  '*.access_token',
  '*.jwt',
  '*.privateKey',
  '*.secret',
  '*.apiKey',
  '*.query',
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  'headers["set-cookie"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
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
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** Logs carry a short hash of session_name, never the raw value (it may be a user id). */
export function sessionHash(sessionName: string): string {
  return createHash('sha256').update(sessionName).digest('base64url').slice(0, 12);
}
