import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AuthError, type Identity } from '../auth/identity.js';
import { GatewayError } from '../errors.js';
import { guardRequestTarget, targetForLog } from '../http/request-guard.js';
import { STEPS, type Maybe, type Steps } from '../maybe.js';
import type { GatewayMetrics, PolicyDenialReason } from '../metrics/metrics.js';
import type { ConcurrencyLimiter } from '../policy/concurrency-limit.js';
import { parseQuery } from '../policy/query-policy.js';
import type { RateDecision, RateLimiter } from '../policy/rate-limit.js';
import type { CompiledEndpoint, Params, RouteTable } from '../policy/route-table.js';
import type { TokenKeys } from '../coze/mint-request.js';
import type { Budgets } from '../usage/budgets.js';

export interface Admission {
  /** The matched endpoint: its policy travels with it, nothing is looked up by name. */
  endpoint: CompiledEndpoint;
  /** The endpoint's label in metrics and logs. */
  route: string;
  path: string;
  /** The query string to forward, after the policy checked and rewrote it. */
  query: string;
  params: Params;
  identity: Identity;
  /** Also the key of the caller's limits, budgets and usage: see admit(). */
  sessionName: string;
  /** The token cache key of this request's token: the session_name, or more (mint-request.ts). */
  tokenKey: string;
  /** Frees the session's concurrency slot; call it once the request (or socket) is over. */
  release(): void;
  /**
   * Takes back the request counted against the budgets (`requests`), for a request the gateway
   * does not forward after all: a Coze token it could not mint, a client gone first, a drain,
   * an upgrade never relayed (docs/usage-and-budgets.md, "What is counted"). Idempotent.
   */
  uncount(): void;
}

export interface AdmitDeps {
  routes: RouteTable;
  authenticate(req: { headers: IncomingMessage['headers']; remoteAddress: string | undefined; rawHeaders?: readonly string[]; queryAuthorization?: string }): Maybe<Identity>;
  rateLimiter: RateLimiter;
  concurrency: ConcurrencyLimiter;
  sessionName(identity: Identity): string;
  metrics: GatewayMetrics;
  /** The budget step (issue 18); absent: no budgets and nothing counted. */
  budgets?: Pick<Budgets, 'admit'>;
  /** How a token key is made when a token carries more than its session_name. */
  tokenKeys?: Pick<TokenKeys, 'proxied'>;
  /** server.maxHeadersCount: the main server keeps one header more than this, so an excess shows. */
  maxHeadersCount: number;
  /** How the steps are chained: STEPS, or (tests only) DEFERRED_STEPS to run every step later. */
  steps?: Steps;
}

/** The path of a trace that has not seen the request's target yet. */
export const UNTRACED_PATH = '-';

/** What the request log records as the admission goes: filled in step by step. */
export interface AdmissionTrace {
  route: string;
  path: string;
  source: string | undefined;
  sessionName: string | undefined;
}

const DENIAL_REASONS: Partial<Record<GatewayError['reason'], PolicyDenialReason>> = {
  'bad-path': 'path',
  'absolute-uri': 'path',
  'route-forbidden': 'route',
  'bot-forbidden': 'bot',
  'workflow-forbidden': 'workflow',
  'app-forbidden': 'app',
  'draft-forbidden': 'draft',
  'ambiguous-field': 'ambiguous',
  'identity-in-query': 'identity',
  'bad-json-body': 'body',
  'unexpected-body': 'body',
  'unsupported-media-type': 'body',
};

const WRONG_TRANSPORT = {
  http: 'This endpoint takes WebSocket upgrades only.',
  websocket: 'This route does not accept WebSocket upgrades.',
} as const;

const NOTHING_COUNTED = (): void => undefined;

/** Retry-After of a refusal for too many requests in flight: one finishes soon. */
const CONCURRENCY_RETRY_SECONDS = 1;

/**
 * Steps 2 to 4 of SPEC section 1, shared by HTTP requests, WebSocket upgrades and token vending:
 * the header count and the path are checked before anything else, then the endpoint, the query's
 * controlled names, then the caller and its session, the session's concurrency and rate limits,
 * then the endpoint's query rules, then the budgets. Nothing here reaches Coze.
 *
 * Every per-caller limit (concurrency, rate, budgets, usage) is keyed by the session_name exactly
 * as sent to Coze, the unit Coze isolates, so two callers share limits exactly when they share a
 * Coze session. A key of the source and subject alone merged callers the template tells apart
 * ({issuer}, {claims.NAME}: "admin" of two tenants): one spent the other's budget and read its
 * usage. The prefix and the HMAC merge no two rendered names (an HMAC collision aside), so the
 * final name is as fine as the template; like the Coze history, it moves when they change.
 *
 * The admission is a plain value when the caller's JWT is already verified, the rate limit is
 * decided locally and the budgets are known locally, a promise otherwise (src/maybe.ts); a
 * refusal is thrown, or rejected.
 */
export function admit(
  deps: AdmitDeps,
  req: IncomingMessage,
  trace: AdmissionTrace,
  /** transport: how the request came (HTTP, SSE included, or an upgrade); checked against the endpoint's. */
  options: { endpoint?: CompiledEndpoint; acceptQueryCredential?: boolean; transport?: 'http' | 'websocket' } = {},
): Maybe<Admission> {
  const steps = deps.steps ?? STEPS;
  let release: (() => void) | undefined;
  const refuse = (err: unknown): never => {
    release?.();
    // Refused before the path was accepted: the log still shows what was asked for.
    if (trace.path === UNTRACED_PATH) trace.path = targetForLog(req.url ?? '');
    recordDenial(deps.metrics, err);
    throw err;
  };
  try {
    // The server keeps maxHeadersCount + 1 headers (createMainServer): more than the limit means
    // some were dropped unseen, and a second credential may be among them (issue 15, finding 8).
    if (req.rawHeaders.length / 2 > deps.maxHeadersCount) {
      deps.metrics.requestLimits.labels('header_count').inc();
      throw new GatewayError('too-many-headers');
    }
    const target = guardRequestTarget(req.method ?? 'GET', req.url ?? '');
    const path = target.path;
    trace.path = path;
    let endpoint = options.endpoint;
    let params: Params = {};
    if (endpoint === undefined) {
      const match = deps.routes.match(req.method ?? '', path);
      if (!match) throw new GatewayError('route-forbidden');
      endpoint = match.endpoint;
      params = match.params;
    }
    trace.route = endpoint.name;
    const query = parseQuery(target.query);

    if (query.credentials.length > 1) throw new AuthError('none', 'malformed', '(the authorization query parameter)', 'duplicate-header');
    // Only upgrades take it (browsers cannot set headers there); elsewhere it is dropped unread.
    let queryAuthorization = options.acceptQueryCredential ? query.credentials[0] : undefined;
    if (queryAuthorization !== undefined && req.headers.authorization !== undefined) {
      // coze-js in Node sends the same credential both ways on every socket: one credential.
      // Two different ones are ambiguous (a proxy in front may have checked the other).
      if (!sameCredential(queryAuthorization, req.headers.authorization)) {
        throw new AuthError('none', 'malformed', '(the Authorization header and the authorization query parameter differ)', 'duplicate-header');
      }
      queryAuthorization = undefined;
    }
    const matched = endpoint;
    let caller: Identity | undefined;
    let sessionName = '';
    const identified = deps.authenticate({
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      remoteAddress: req.socket.remoteAddress,
      ...(queryAuthorization !== undefined ? { queryAuthorization } : {}),
    });
    const admitted = steps.chain(
      steps.chain(identified, (identity): Maybe<RateDecision> => {
        caller = identity;
        trace.source = identity.source;
        sessionName = deps.sessionName(identity);
        trace.sessionName = sessionName;
        release = deps.concurrency.acquire(sessionName);
        if (!release) {
          deps.metrics.requestLimits.labels('concurrency').inc();
          throw new GatewayError('too-many-concurrent', { headers: { 'retry-after': String(CONCURRENCY_RETRY_SECONDS) } });
        }
        return deps.rateLimiter.take(sessionName);
      }),
      (limit): Admission => {
        if (!limit.allowed) {
          deps.metrics.rateLimited.inc();
          throw new GatewayError('rate-limited', { headers: { 'retry-after': String(limit.retryAfterSeconds) } });
        }
        // An HTTP request to a WebSocket endpoint, or the other way round: refused before the
        // budgets, which count only what the gateway will forward.
        if (options.transport !== undefined && (options.transport === 'websocket') !== (matched.transport === 'websocket')) {
          throw new GatewayError('route-forbidden', { detail: WRONG_TRANSPORT[options.transport] });
        }
        const identity = caller as Identity;
        const forwardedQuery = matched.rules.rewriteQuery(query, params, sessionName);
        const tokenKey = deps.tokenKeys ? deps.tokenKeys.proxied(identity, sessionName) : sessionName;
        // Last, so that only a request the gateway will forward is counted against the budgets.
        const uncount = deps.budgets?.admit(matched, identity, sessionName) ?? NOTHING_COUNTED;
        return { endpoint: matched, route: matched.name, path, query: forwardedQuery, params, identity, sessionName, tokenKey, release: release as () => void, uncount };
      },
    );
    return admitted instanceof Promise ? admitted.catch(refuse) : admitted;
  } catch (err) {
    return refuse(err);
  }
}

/** Byte equality in constant time: hashing first makes the lengths equal too. */
function sameCredential(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

export function recordDenial(metrics: GatewayMetrics, err: unknown): void {
  if (err instanceof AuthError) {
    metrics.authFailures.labels(err.source, err.failure).inc();
    return;
  }
  if (err instanceof GatewayError) {
    const reason = DENIAL_REASONS[err.reason];
    if (reason) metrics.policyDenials.labels(reason).inc();
  }
}
