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
  /**
   * A channel app (渠道) applies the `scope` of a token request: its tokens chat only with the
   * scope's bots. A normal app ignores the scope (Coze: https://www.coze.cn/open/docs/developer_guides/oauth_jwt_channel).
   */
  type?: 'normal' | 'channel';
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
  /**
   * A non-streaming chat answers `in_progress` and finishes on this many retrieves (default 2), as
   * Coze's does after a while, so that clients really poll. 0 finishes it at once.
   */
  retrievesBeforeCompletion?: number;
  /** How each bot answers, by bot id, as its Coze configuration would; others echo. */
  bots?: Readonly<Record<string, BotBehaviour>>;
  /** How each workflow runs, by workflow id; others answer three Message events and Done. */
  workflows?: Readonly<Record<string, WorkflowBehaviour>>;
}

/**
 * `echo` answers "Echo: <question>"; `tool` calls a client-side tool and waits for
 * submit_tool_outputs (`requires_action`); `fail` ends in `conversation.chat.failed`; `error` ends
 * the stream with an `error` event (a failed chat when polled).
 */
export const BOT_BEHAVIOURS = ['echo', 'tool', 'fail', 'error'] as const;
export type BotBehaviour = (typeof BOT_BEHAVIOURS)[number];

/**
 * `echo` streams three Message events and Done; `interrupt` stops at a question node with an
 * Interrupt event (resumed with stream_resume); `error` ends with an Error event; `ping` sends
 * PING heartbeats between its messages; `large` runs like `echo` but its sync answer's output is
 * 64 KiB (a workflow returning a document), past what the gateway inspects whole.
 */
export const WORKFLOW_BEHAVIOURS = ['echo', 'interrupt', 'error', 'ping', 'large'] as const;
export type WorkflowBehaviour = (typeof WORKFLOW_BEHAVIOURS)[number];

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** The session the bearer token belongs to; undefined when the token was refused. */
  sessionName: string | undefined;
  body?: unknown;
  /** The body exactly as received (JSON routes), to check that nothing but the forced fields changed. */
  rawBody?: string;
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
  /** SSE: write N events (and `partialBytes` of the next one: a cut mid-event), then cut the connection. */
  | { kind: 'reset-mid-stream'; afterEvents: number; partialBytes?: number; times?: number }
  /** SSE: write N events (and `partialBytes` of the next one), then keep the stream open and silent. */
  | { kind: 'stall-mid-stream'; afterEvents: number; partialBytes?: number; times?: number }
  | { kind: 'hang'; times?: number }
  /** JSON: answer 200 with full headers (Content-Length included) and `partialBytes` (default 16) of the body, then keep the connection open and silent. */
  | { kind: 'stall-mid-body'; partialBytes?: number; times?: number }
  /** SSE (or, on a WebSocket, binary frames) as fast as the reader takes it, forever: shows whether backpressure reaches Coze. */
  | { kind: 'flood'; times?: number }
  | { kind: 'code'; code: number; msg: string; httpStatus?: number; times?: number }
  /** WebSocket handshakes answered `status` with a `{code, msg}` body, whatever the token (default 401 and 4100). */
  | { kind: 'refuse-upgrade'; status?: number; code?: number; times?: number };

/** The faults a WebSocket handshake takes; any other waits for an HTTP call. */
export type UpgradeFault = Extract<ApiFault, { kind: 'flood' | 'refuse-upgrade' }>;

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
  /** The JWT's session_context.device_info.custom_consumer, when it had one. */
  customConsumer?: string;
  /** A channel app's token with a scope: the only bots it may chat with. */
  botIds?: ReadonlySet<string>;
}

/** One successful token exchange, as the token endpoint received it (tests assert on these). */
export interface ExchangeRecord {
  appId: string;
  sessionName: string;
  /** The JWT's session_context, as signed. */
  sessionContext?: unknown;
  /** The request body's scope, as sent. */
  scope?: unknown;
  accessToken: string;
}
