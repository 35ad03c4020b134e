import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AuthError, type Identity } from '../auth/identity.js';
import { GatewayError } from '../errors.js';
import { guardRequestTarget } from '../http/request-guard.js';
import type { GatewayMetrics, PolicyDenialReason } from '../metrics/metrics.js';
import type { BodyPolicy } from '../policy/body-policy.js';
import type { RateLimiter } from '../policy/rate-limit.js';
import type { createRoutePolicy } from '../policy/routes.js';
import type { TokenKeys } from '../coze/mint-request.js';
import type { Budgets } from '../usage/budgets.js';

export interface Admission {
  route: string;
  path: string;
  /** The query string to forward, after the policy rewrote it. */
  query: string;
  params: Readonly<Record<string, string>>;
  identity: Identity;
  sessionName: string;
  /** The token cache key of this request's token: the session_name, or more (mint-request.ts). */
  tokenKey: string;
}

export interface AdmitDeps {
  routes: ReturnType<typeof createRoutePolicy>;
  authenticate(req: { headers: IncomingMessage['headers']; remoteAddress: string | undefined; rawHeaders?: readonly string[]; queryAuthorization?: string }): Promise<Identity>;
  rateLimiter: RateLimiter;
  sessionName(identity: Identity): string;
  bodyPolicy: BodyPolicy;
  metrics: GatewayMetrics;
  /** The budget step (issue 18); absent: no budgets and nothing counted. */
  budgets?: Pick<Budgets, 'admit'>;
  /** How a token key is made when a token carries more than its session_name. */
  tokenKeys?: Pick<TokenKeys, 'proxied'>;
}

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
  'bad-json-body': 'body',
};

/**
 * Steps 2 to 4 of SPEC section 1, shared by HTTP requests, WebSocket upgrades and token vending:
 * the path is checked before anything else, then the route, then the caller, then the rate
 * limit, then the session, then the budgets. Nothing here reaches Coze.
 */
export async function admit(
  deps: AdmitDeps,
  req: IncomingMessage,
  trace: AdmissionTrace,
  options: { route?: string; acceptQueryCredential?: boolean } = {},
): Promise<Admission> {
  try {
    const target = guardRequestTarget(req.method ?? 'GET', req.url ?? '');
    const path = target.path;
    const { credential: queryCredential, rest: query } = takeQueryCredential(target.query);
    trace.path = path;
    let route = options.route;
    let params: Record<string, string> = {};
    if (route === undefined) {
      const match = deps.routes.match(req.method ?? '', path);
      if (!match) throw new GatewayError('route-forbidden');
      route = match.name;
      params = match.params;
    }
    trace.route = route;

    // Only upgrades take it (browsers cannot set headers there); elsewhere it is dropped unread.
    let queryAuthorization = options.acceptQueryCredential ? queryCredential : undefined;
    if (queryAuthorization !== undefined && req.headers.authorization !== undefined) {
      // coze-js in Node sends the same credential both ways on every socket: one credential.
      // Two different ones are ambiguous (a proxy in front may have checked the other).
      if (!sameCredential(queryAuthorization, req.headers.authorization)) {
        throw new AuthError('none', 'malformed', '(the Authorization header and the authorization query parameter differ)', 'duplicate-header');
      }
      queryAuthorization = undefined;
    }
    const identity = await deps.authenticate({
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      remoteAddress: req.socket.remoteAddress,
      ...(queryAuthorization !== undefined ? { queryAuthorization } : {}),
    });
    trace.source = identity.source;

    const limit = await deps.rateLimiter.take(`${identity.source}:${identity.subject}`);
    if (!limit.allowed) {
      deps.metrics.rateLimited.inc();
      throw new GatewayError('rate-limited', { headers: { 'retry-after': String(limit.retryAfterSeconds) } });
    }

    const sessionName = deps.sessionName(identity);
    trace.sessionName = sessionName;
    const forwardedQuery = deps.bodyPolicy.applyToQuery(route, query, params, sessionName);
    const tokenKey = deps.tokenKeys ? deps.tokenKeys.proxied(identity, sessionName) : sessionName;
    // Last, so that only a request the gateway will forward is counted against the budgets.
    deps.budgets?.admit(route, identity);
    return { route, path, query: forwardedQuery, params, identity, sessionName, tokenKey };
  } catch (err) {
    recordDenial(deps.metrics, err);
    throw err;
  }
}

/**
 * Splits the caller's `authorization` query parameter off the query, in any letter case, so that
 * it is never forwarded: Coze gets the session's token instead (as Coze's realtime docs show).
 */
export function takeQueryCredential(query: string): { credential: string | undefined; rest: string } {
  if (!/(?:^|&)authorization=/i.test(query)) return { credential: undefined, rest: query };
  const search = new URLSearchParams(query);
  const names = [...new Set([...search.keys()].filter((k) => k.toLowerCase() === 'authorization'))];
  const values = names.flatMap((name) => search.getAll(name));
  if (values.length > 1) throw new AuthError('none', 'malformed', '(the authorization query parameter)', 'duplicate-header');
  for (const name of names) search.delete(name);
  return { credential: values[0], rest: search.toString() };
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
