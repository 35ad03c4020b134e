import type { IncomingHttpHeaders } from 'node:http';

export interface EmulatorKey {
  kid: string;
  /** SPKI PEM. */
  publicKeyPem: string;
}

export interface EmulatorApp {
  appId: string;
  keys: EmulatorKey[];
  name?: string;
  disabled?: boolean;
}

export interface EmulatorOptions {
  apps: EmulatorApp[];
  host?: string;
  port?: number;
  /** Expected JWT aud: api.coze.cn unless told otherwise. */
  audience?: string;
  now?: () => number;
  maxJwtWindowSeconds?: number;
  clockSkewSeconds?: number;
  /** HTTP status of token-endpoint error bodies (Coze's is unconfirmed: both 200 and 4xx occur). */
  tokenStatus?: 200 | 400 | 401;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** The session the bearer token belongs to; undefined when the token was refused. */
  sessionName: string | undefined;
  body?: unknown;
}

export type TokenFault =
  | { kind: 'status'; status: number; times?: number }
  | { kind: 'error-code'; errorCode: 'invalid_client' | 'access_deny' | 'invalid_request' | 'internal_error'; httpStatus?: number; times?: number }
  | { kind: 'delay'; ms: number; times?: number }
  | { kind: 'reset'; times?: number }
  | { kind: 'hang'; times?: number };

export type ApiFault =
  | { kind: 'status'; status: number; times?: number }
  | { kind: 'reset'; times?: number }
  | { kind: 'reset-mid-stream'; afterEvents: number; times?: number }
  /** SSE: write N events, then keep the stream open and silent. */
  | { kind: 'stall-mid-stream'; afterEvents: number; times?: number }
  | { kind: 'hang'; times?: number }
  /** SSE (or, on a WebSocket, binary frames) as fast as the reader takes it, forever: shows whether backpressure reaches Coze. */
  | { kind: 'flood'; times?: number }
  | { kind: 'code'; code: number; msg: string; httpStatus?: number; times?: number };

export interface StreamPacer {
  release(n?: number): void;
  readonly sent: number;
  waitForSent(n: number): Promise<void>;
}

/** What an issued token is bound to. */
export interface IssuedToken {
  appId: string;
  sessionName: string;
  expiresAtMs: number;
  revoked: boolean;
}
