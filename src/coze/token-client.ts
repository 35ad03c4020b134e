import http from 'node:http';
import https from 'node:https';
import type { JwtSigner } from './jwt-signer.js';
import type { MintRequest } from './mint-request.js';

/** Closed set of exchange outcomes: the `outcome` label of coze_gateway_token_mints_total. */
export const MINT_OUTCOMES = [
  'success',
  'invalid_client',
  'access_deny',
  'invalid_request',
  'unsupported_grant_type',
  'server_error',
  'network_error',
  'timeout',
  'bad_response',
  'other_error',
] as const;
export type MintOutcome = (typeof MINT_OUTCOMES)[number];

/** Failures worth another attempt: Coze said "retry later", or we never got an answer. */
const RETRYABLE: ReadonlySet<MintOutcome> = new Set(['server_error', 'network_error', 'bad_response']);

export interface CozeToken {
  accessToken: string;
  /** Absolute Unix time in seconds, exactly as Coze sent it (https://www.coze.cn/open/docs/developer_guides/oauth_jwt, response). */
  expiresAt: number;
}

/**
 * A failed exchange. Its message names Coze's error_code and error_message (scrubbed); it never
 * holds the JWT or a token.
 */
export class TokenMintError extends Error {
  readonly outcome: Exclude<MintOutcome, 'success'>;
  readonly errorCode: string | undefined;
  /** Coze's error_message, scrubbed of anything shaped like a credential. */
  readonly errorMessage: string | undefined;
  readonly logId: string | undefined;
  readonly httpStatus: number | undefined;
  readonly attempts: number;

  constructor(init: { outcome: Exclude<MintOutcome, 'success'>; errorCode?: string; errorMessage?: string; logId?: string; httpStatus?: number; attempts: number; message: string }) {
    super(init.message);
    this.name = 'TokenMintError';
    this.outcome = init.outcome;
    this.errorCode = init.errorCode;
    this.errorMessage = init.errorMessage;
    this.logId = init.logId;
    this.httpStatus = init.httpStatus;
    this.attempts = init.attempts;
  }
}

export interface MintAttemptReport {
  sessionName: string;
  outcome: MintOutcome;
  durationMs: number;
  attempt: number;
  logId: string | undefined;
  errorCode: string | undefined;
  errorMessage: string | undefined;
}

export interface TokenClientOptions {
  baseUrl: string;
  accountId?: string | undefined;
  signer: JwtSigner;
  durationSeconds: number;
  /** Deadline for one exchange, all retries included. */
  deadlineMs: number;
  agent?: http.Agent;
  now?: () => number;
  /** Backoff between attempts; injected so tests need not wait. */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** Called once per exchange with the final outcome (metrics and logs hang here). */
  onExchange?: (report: MintAttemptReport) => void;
}

export interface TokenClient {
  /** A session_name alone, or what else the token carries (custom_consumer, scope). */
  exchange(request: string | MintRequest): Promise<CozeToken>;
  close(): void;
}

const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 2000;
/**
 * A retry is made only if it would still have this long before the deadline: an attempt given a
 * few milliseconds can only time out, and would report a timeout where Coze's own error was the
 * cause (a test saw it on a loaded machine).
 */
const MIN_ATTEMPT_MS = 100;
const MAX_TOKEN_BODY_BYTES = 64 * 1024;

export function createTokenClient(options: TokenClientOptions): TokenClient {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref()));
  const random = options.random ?? Math.random;
  const base = new URL(options.baseUrl);
  const path = options.accountId
    ? `/api/permission/oauth2/account/${encodeURIComponent(options.accountId)}/token`
    : '/api/permission/oauth2/token';
  const url = new URL(path, base);
  const isHttps = url.protocol === 'https:';
  const ownAgent = options.agent === undefined;
  const agent = options.agent ?? (isHttps ? new https.Agent({ keepAlive: true, maxSockets: 64 }) : new http.Agent({ keepAlive: true, maxSockets: 64 }));
  const grant = { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', duration_seconds: options.durationSeconds };
  const plainBody = JSON.stringify(grant);
  // The scope travels in the body, as the channel-app docs and the Python and Go SDKs send it.
  const bodyOf = (request: MintRequest) => (request.scope ? JSON.stringify({ ...grant, scope: request.scope }) : plainBody);

  async function attemptOnce(request: MintRequest, body: string, timeoutMs: number): Promise<AttemptResult> {
    // A fresh JWT per attempt: Coze accepts each jti once, and a lost answer may have used it.
    const jwt = await options.signer.sign(request.sessionName, { customConsumer: request.customConsumer });
    let response: RawResponse;
    try {
      response = await postJson(url, agent, isHttps, { authorization: `Bearer ${jwt}` }, body, timeoutMs);
    } catch (err) {
      if (err instanceof AttemptTimeout) return { outcome: 'timeout', message: 'the token endpoint did not answer in time' };
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      return { outcome: 'network_error', message: `the token endpoint could not be reached (${code})` };
    }
    return classify(response, now);
  }

  return {
    async exchange(input): Promise<CozeToken> {
      const request: MintRequest = typeof input === 'string' ? { sessionName: input } : input;
      const { sessionName } = request;
      const body = bodyOf(request);
      const started = now();
      const deadline = started + options.deadlineMs;
      let attempt = 0;
      let last: AttemptResult;
      for (;;) {
        attempt += 1;
        last = await attemptOnce(request, body, Math.max(1, deadline - now()));
        // A timeout is not retried: each attempt already had the whole remaining deadline.
        if (!RETRYABLE.has(last.outcome)) break;
        const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1)) * (0.5 + random() / 2);
        if (now() + backoff + MIN_ATTEMPT_MS > deadline) {
          last = { ...last, message: `${last.message}; gave up after ${attempt} attempts within the ${options.deadlineMs} ms deadline` };
          break;
        }
        await sleep(backoff);
      }
      options.onExchange?.({
        sessionName,
        outcome: last.outcome,
        durationMs: now() - started,
        attempt,
        logId: last.logId,
        errorCode: last.errorCode,
        errorMessage: last.errorMessage,
      });
      if (last.outcome === 'success' && last.token) return last.token;
      throw new TokenMintError({
        outcome: last.outcome as Exclude<MintOutcome, 'success'>,
        message: last.message,
        attempts: attempt,
        ...(last.errorCode !== undefined ? { errorCode: last.errorCode } : {}),
        ...(last.errorMessage !== undefined ? { errorMessage: last.errorMessage } : {}),
        ...(last.logId !== undefined ? { logId: last.logId } : {}),
        ...(last.httpStatus !== undefined ? { httpStatus: last.httpStatus } : {}),
      });
    },
    close() {
      if (ownAgent) agent.destroy();
    },
  };
}

interface AttemptResult {
  outcome: MintOutcome;
  message: string;
  token?: CozeToken;
  errorCode?: string;
  errorMessage?: string;
  logId?: string;
  httpStatus?: number;
}

const ERROR_CODE_OUTCOMES: Record<string, MintOutcome> = {
  invalid_client: 'invalid_client',
  access_deny: 'access_deny',
  invalid_request: 'invalid_request',
  unsupported_grant_type: 'unsupported_grant_type',
  internal_error: 'server_error',
};

/**
 * Coze signals errors either as HTTP 4xx/5xx or as HTTP 200 with error_code
 * (https://www.coze.cn/open/docs/developer_guides/oauth_jwt; the HTTP status is not documented): both are checked.
 */
function classify(response: RawResponse, now: () => number): AttemptResult {
  const logId = response.logId;
  const httpStatus = response.status;
  const common = { httpStatus, ...(logId ? { logId } : {}) };
  let parsed: unknown;
  try {
    parsed = JSON.parse(response.body);
  } catch {
    const outcome: MintOutcome = httpStatus >= 500 ? 'server_error' : 'bad_response';
    return { outcome, message: `the token endpoint answered HTTP ${httpStatus} with a body that is not JSON`, ...common };
  }
  const obj = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  const errorCode = typeof obj.error_code === 'string' && obj.error_code !== '' ? obj.error_code : undefined;
  if (errorCode !== undefined) {
    const outcome = ERROR_CODE_OUTCOMES[errorCode] ?? (httpStatus >= 500 ? 'server_error' : 'other_error');
    const errorMessage = typeof obj.error_message === 'string' ? scrubCozeMessage(obj.error_message) : '';
    const said = errorMessage ? `: "${errorMessage}"` : '';
    return { outcome, errorCode: safeText(errorCode), message: `Coze refused the token exchange with error_code ${safeText(errorCode)}${said}`, ...(errorMessage ? { errorMessage } : {}), ...common };
  }
  if (httpStatus >= 500) return { outcome: 'server_error', message: `the token endpoint answered HTTP ${httpStatus}`, ...common };
  if (httpStatus >= 400) return { outcome: 'other_error', message: `the token endpoint answered HTTP ${httpStatus}`, ...common };

  const accessToken = obj.access_token;
  const expiresAt = obj.expires_in;
  // The token goes into an Authorization header: anything but a plain token would break framing.
  if (typeof accessToken !== 'string' || !/^[\x21-\x7e]{1,4096}$/.test(accessToken)) {
    return { outcome: 'bad_response', message: 'the token endpoint answered without a usable access_token', ...common };
  }
  if (typeof expiresAt !== 'number' || !Number.isInteger(expiresAt) || expiresAt * 1000 <= now()) {
    // expires_in is an absolute Unix time; a duration (e.g. 900) would look long expired.
    return { outcome: 'bad_response', message: 'the token endpoint answered with an expires_in that is not a future Unix time', ...common };
  }
  return { outcome: 'success', message: 'ok', token: { accessToken, expiresAt }, ...common };
}

function safeText(s: string): string {
  return s.replace(/[^\w.-]/g, '').slice(0, 64);
}

/** Longest error_message kept: Coze's documented ones are one short sentence. */
const MAX_ERROR_MESSAGE = 200;

/**
 * Coze's error_message goes into logs, check-config and the 502's msg, so anything in it that
 * is shaped like a credential is cut out first: a JWT, a Bearer value, a Coze token, a PEM block,
 * or any long opaque run (a key, a secret). Control characters go too (log and header safety).
 */
export function scrubCozeMessage(text: string): string {
  return text
    .replace(/-----BEGIN[\s\S]*?(?:-----END[^-]*-----|$)/g, '[redacted]')
    .replace(/[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*/g, '[redacted]')
    .replace(/\beyJ[A-Za-z0-9_-]+/g, '[redacted]')
    .replace(/\bBearer\s+\S+/gi, 'Bearer [redacted]')
    .replace(/\b(?:czs|czu|pat|sat)_[A-Za-z0-9_-]+/gi, '[redacted]')
    .replace(/[A-Za-z0-9+/=_-]{32,}/g, '[redacted]')
    .replace(/\p{Cc}+/gu, ' ')
    .trim()
    .slice(0, MAX_ERROR_MESSAGE);
}

interface RawResponse {
  status: number;
  body: string;
  logId: string | undefined;
}

class AttemptTimeout extends Error {}

function postJson(url: URL, agent: http.Agent, isHttps: boolean, headers: Record<string, string>, body: string, timeoutMs: number): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const request = (isHttps ? https.request : http.request)(url, {
      method: 'POST',
      agent,
      headers: {
        ...headers,
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(body)),
        accept: 'application/json',
      },
    });
    const timer = setTimeout(() => request.destroy(new AttemptTimeout()), timeoutMs);
    request.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    request.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_TOKEN_BODY_BYTES) {
          request.destroy(new Error('token response too large'));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        clearTimeout(timer);
        const logIdHeader = res.headers['x-tt-logid'];
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8'),
          logId: typeof logIdHeader === 'string' ? logIdHeader : undefined,
        });
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    request.end(body);
  });
}
