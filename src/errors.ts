/**
 * The one error catalogue. Every error the gateway produces itself is one of these reasons,
 * turned into the Coze envelope in exactly one place (`toErrorResponse`), so that the official
 * SDKs surface it (SPEC section 7) and `docs/errors.md` can be checked against it by a test.
 *
 * Envelope codes are HTTP status x 1000 + n, so they never collide with Coze's own codes
 * (4000-5000, 4100, 700012006, ...) and a user can tell our errors from Coze's at a glance.
 * One deliberate exception: every 401 (the caller's own credential failed) uses Coze's 4100.
 * The Chat SDKs (Taro chat-sdk, open-chat) refresh their token only when `code || status` is
 * 401, 4100, 4101 or 700012006, and they read the body code first, so any other code would leave
 * an end user with an expired credential stuck (coze-js packages/chat-sdk, mini-coze-api.ts).
 * X-Gateway-Error still tells these reasons apart, and from Coze's own 4100.
 */

/** The body code of every caller-credential failure: the token-refresh trigger of the Chat SDKs. */
export const CREDENTIAL_FAILURE_CODE = 4100;
export interface ErrorSpec {
  readonly status: number;
  readonly code: number;
  readonly message: string;
}

export const ERROR_CATALOGUE = {
  'bad-path': {
    status: 400,
    code: 400001,
    message:
      'The request path is not allowed: it contains "..", an encoded slash, dot or backslash, a NUL byte, or an empty segment. Send the plain Coze API path.',
  },
  'absolute-uri': {
    status: 400,
    code: 400002,
    message: 'Absolute-URI request lines are refused: this gateway is not a forward proxy. Send the path only.',
  },
  'bad-json-body': {
    status: 400,
    code: 400003,
    message: 'The request body must be valid JSON on this route, because the gateway applies its identity policy to it.',
  },
  'bad-session-name': {
    status: 400,
    code: 400004,
    message:
      'The caller identity maps to an invalid session_name (it must be 1 to 128 printable ASCII characters). Check the identity claims and session.template: each claim it names must be a string.',
  },
  'bad-request': {
    status: 400,
    code: 400005,
    message: 'The request is malformed.',
  },
  'duplicate-header': {
    status: 400,
    code: 400006,
    message:
      'A credential (the Authorization header or authorization query parameter, X-Api-Key, or the trusted identity header) was sent more than once. Send it once.',
  },
  'ambiguous-field': {
    status: 400,
    code: 400007,
    message:
      'A field the gateway controls (an identity, bot, workflow, app or version field) is ambiguous: sent twice, in another letter case, or with a percent-encoded name. Send it once, spelled exactly.',
  },
  'unexpected-body': {
    status: 400,
    code: 400008,
    message: 'This endpoint takes no request body. Send the request without one.',
  },
  'identity-in-query': {
    status: 400,
    code: 400009,
    message: 'An identity field (user_id, connector_uid, uid) was sent in the query string of an endpoint that does not take it there. The gateway sets the caller\'s identity itself: remove it.',
  },
  'bad-custom-consumer': {
    status: 400,
    code: 400010,
    message:
      'The caller identity maps to an invalid custom_consumer for Coze (it must be 1 to 128 printable ASCII characters). Check the identity claims and coze.sessionContext.customConsumer: each claim it names must be a string.',
  },
  'credential-missing': {
    status: 401,
    code: CREDENTIAL_FAILURE_CODE,
    // The detail names what this gateway accepts (its identity sources), so a trusted-header-only
    // sidecar never tells its app to send a Bearer token it would not look at.
    message: 'No credential was sent.',
  },
  'credential-invalid': {
    status: 401,
    code: CREDENTIAL_FAILURE_CODE,
    message: 'The credential was rejected by the gateway. Obtain a fresh credential from your application and retry.',
  },
  'untrusted-identity-header': {
    status: 401,
    code: CREDENTIAL_FAILURE_CODE,
    message: 'The trusted identity header was sent from an address that is not allowed to set it.',
  },
  'route-forbidden': {
    status: 403,
    code: 403001,
    message: 'This Coze API route is not exposed by the gateway. See docs/routes.md and policy.routes for the exposed endpoints.',
  },
  'bot-forbidden': {
    status: 403,
    code: 403002,
    message: 'This bot_id is not allowed by the gateway (policy.allowedBotIds).',
  },
  'workflow-forbidden': {
    status: 403,
    code: 403003,
    message: 'This workflow_id is not allowed by the gateway (policy.allowedWorkflowIds).',
  },
  'app-forbidden': {
    status: 403,
    code: 403005,
    message: 'This app_id is not allowed by the gateway (policy.allowedAppIds).',
  },
  'draft-forbidden': {
    status: 403,
    code: 403006,
    message:
      'Drafts and pinned versions are not available through this gateway (policy.allowDrafts). Remove publish_status, bot_version, workflow_version, draft_mode or is_published=false.',
  },
  'cors-forbidden': {
    status: 403,
    code: 403004,
    message: 'This origin is not allowed (cors.allowedOrigins).',
  },
  'not-found': {
    status: 404,
    code: 404001,
    message: 'No such gateway endpoint.',
  },
  'request-timeout': {
    status: 408,
    code: 408001,
    message: 'The request headers did not arrive in time (server.headersTimeoutSeconds).',
  },
  'body-timeout': {
    status: 408,
    code: 408002,
    message: 'The request body did not arrive in time (server.bodyReadTimeoutSeconds). Send it at once, or retry.',
  },
  'body-too-large': {
    status: 413,
    code: 413001,
    message: 'The request body is larger than the gateway allows (server.maxBodyBytes).',
  },
  'unsupported-media-type': {
    status: 415,
    code: 415001,
    message: 'This endpoint takes a JSON body: send it with Content-Type: application/json (UTF-8, no Content-Encoding).',
  },
  'rate-limited': {
    status: 429,
    code: 429001,
    message: 'Too many requests for this identity. Retry after the number of seconds in Retry-After.',
  },
  'too-many-concurrent': {
    status: 429,
    code: 429002,
    message: 'Too many requests of this identity are in flight at once (rateLimit.maxConcurrentPerIdentity). Retry after the number of seconds in Retry-After.',
  },
  'budget-exceeded': {
    status: 429,
    code: 429003,
    message:
      'This identity has used up its usage budget. The detail names the budget and when it resets; retry after the number of seconds in Retry-After, or ask the operator for a larger budget.',
  },
  'headers-too-large': {
    status: 431,
    code: 431001,
    message: 'The request headers are larger than the gateway accepts (16 KiB in all).',
  },
  'too-many-headers': {
    status: 431,
    code: 431002,
    message: 'The request has more header fields than the gateway accepts (server.maxHeadersCount).',
  },
  'internal-error': {
    status: 500,
    code: 500001,
    message: 'The gateway failed unexpectedly. Retry; if it persists, report the logid.',
  },
  'token-mint-failed': {
    status: 502,
    code: 502001,
    message: 'The gateway could not obtain a Coze access token for this session.',
  },
  'upstream-unavailable': {
    status: 502,
    code: 502002,
    message: 'The Coze API could not be reached.',
  },
  'upstream-bad-response': {
    status: 502,
    code: 502003,
    message: 'The Coze API returned a response the gateway could not relay.',
  },
  draining: {
    status: 503,
    code: 503001,
    message: 'The gateway is shutting down. Retry on another replica.',
  },
  'identity-provider-unavailable': {
    status: 503,
    code: 503002,
    message: 'The identity provider key set (identity.jwt.jwksUrl) could not be fetched, so the credential cannot be checked. Retry shortly.',
  },
  'gateway-busy': {
    status: 503,
    code: 503003,
    message: 'The memory the gateway sets aside for request bodies is in use (server.bufferedBodyBudgetBytes). Retry after the number of seconds in Retry-After.',
  },
  'token-mint-timeout': {
    status: 504,
    code: 504001,
    message: 'Obtaining a Coze access token for this session timed out.',
  },
  'upstream-timeout': {
    status: 504,
    code: 504002,
    message: 'The Coze API did not answer in time.',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorReason = keyof typeof ERROR_CATALOGUE;

export interface GatewayErrorOptions {
  /** Appended to the catalogue message; must never contain a secret. */
  detail?: string;
  /** Extra response headers, e.g. Retry-After. */
  headers?: Record<string, string>;
  /** Extra fields of the envelope's `detail`, next to logid (e.g. when a budget resets). */
  detailFields?: Record<string, string | number>;
  cause?: unknown;
}

/** A request error with a catalogue reason. Programmer errors stay plain Errors/TypeErrors. */
export class GatewayError extends Error {
  readonly reason: ErrorReason;
  readonly status: number;
  readonly code: number;
  readonly detail: string | undefined;
  readonly headers: Record<string, string>;
  readonly detailFields: Record<string, string | number> | undefined;

  constructor(reason: ErrorReason, options: GatewayErrorOptions = {}) {
    const spec = ERROR_CATALOGUE[reason];
    super(options.detail ? `${spec.message} ${options.detail}` : spec.message, { cause: options.cause });
    this.name = 'GatewayError';
    this.reason = reason;
    this.status = spec.status;
    this.code = spec.code;
    this.detail = options.detail;
    this.headers = options.headers ?? {};
    this.detailFields = options.detailFields;
  }
}

export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * The only place an error becomes a client response. Anything that is not a GatewayError is an
 * internal error: its message and stack are never sent.
 */
export function toErrorResponse(err: unknown, requestId: string): ErrorResponse {
  const gatewayError = err instanceof GatewayError ? err : new GatewayError('internal-error');
  const body = JSON.stringify({
    code: gatewayError.code,
    msg: gatewayError.message,
    detail: { ...gatewayError.detailFields, logid: requestId },
  });
  const headers: Record<string, string> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    'x-gateway-error': gatewayError.reason,
    'x-request-id': requestId,
    ...gatewayError.headers,
  };
  if (gatewayError.status === 401 && !('www-authenticate' in headers)) {
    headers['www-authenticate'] = 'Bearer realm="coze-session-gateway"';
  }
  return { status: gatewayError.status, headers, body };
}
