import { collectDefaultMetrics, Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { BoundHistogram, type BoundObserver } from './bound-histogram.js';
import { AUTH_FAILURE_REASONS, IDENTITY_SOURCES } from '../auth/identity.js';
import { REDIS_OPERATIONS } from '../cache/redis-client.js';
import { CACHE_RESULTS } from '../coze/token-cache.js';
import { MINT_OUTCOMES } from '../coze/token-client.js';
import { FOLLOW_UP_OUTCOMES, type FollowUpOutcome } from '../usage/chat-follow-up.js';
import { BUDGET_KINDS } from '../usage/budget-overrides.js';
import { USAGE_WINDOWS } from '../usage/usage-windows.js';

/**
 * Every metric of SPEC section 7 on an injected Registry. Labels come from closed sets only
 * (route names, methods, status codes, outcomes): never a user, session, token or raw path.
 */
export const POLICY_DENIAL_REASONS = ['route', 'path', 'bot', 'workflow', 'app', 'draft', 'ambiguous', 'identity', 'cors', 'body'] as const;
export type PolicyDenialReason = (typeof POLICY_DENIAL_REASONS)[number];

/** Requests refused by a resource limit (issue 15): too many headers, too many in flight, the body budget spent, a body too slow. */
export const REQUEST_LIMITS = ['header_count', 'concurrency', 'body_budget', 'body_timeout'] as const;
export type RequestLimit = (typeof REQUEST_LIMITS)[number];

export const UPSTREAM_ERROR_KINDS = ['connect', 'reset', 'timeout', 'idle_timeout', 'bad_response', 'retried_token'] as const;
export type UpstreamErrorKind = (typeof UPSTREAM_ERROR_KINDS)[number];

/** Coze codes worth a dashboard of their own (https://www.coze.cn/open/docs/developer_guides/coze_error_codes); the rest count as `other`. */
export const KNOWN_COZE_CODES = [
  '4000', '4001', '4002', '4006', '4007', '4008', '4009', '4010', '4011', '4013', '4015', '4016', '4019', '4020',
  '4100', '4101', '4102', '4104', '4105', '4200', '4300', '4302', '5000', '700012006', '103000001', 'other',
] as const;

export const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OTHER'] as const;

export interface GatewayMetrics {
  registry: Registry;
  httpRequests: Counter<'route' | 'method' | 'status'>;
  httpDuration: Histogram<'route' | 'method'>;
  upstreamResponse: Histogram<'route'>;
  upstreamFirstByte: Histogram<'route'>;
  activeStreams: Gauge;
  activeWebsockets: Gauge;
  tokenCacheRequests: Counter<'result'>;
  tokenMints: Counter<'outcome'>;
  tokenMintsHeld: Counter;
  tokenMintDuration: Histogram;
  authFailures: Counter<'source' | 'reason'>;
  policyDenials: Counter<'reason'>;
  rateLimited: Counter;
  requestLimits: Counter<'limit'>;
  bufferedRequestBytes: Gauge;
  upstreamErrors: Counter<'kind'>;
  cozeErrorCodes: Counter<'code'>;
  redisUp: Gauge;
  redisErrors: Counter<'operation'>;
  tokenMintsUnshared: Counter;
  usageTokens: Counter<'route' | 'kind'>;
  budgetRefusals: Counter<'window' | 'budget'>;
  budgetOverrideReloads: Counter<'outcome'>;
  /** What became of the chats the gateway followed up itself (chat-follow-up.ts). */
  countFollowUp(outcome: FollowUpOutcome): void;
  apiKeyReloads: Counter<'outcome'>;
  /** Coze tokens an answer reported, by route: input and output. */
  countTokens(route: string, input: number, output: number): void;
  countCozeCode(code: number | string): void;
  methodLabel(method: string | undefined): (typeof METHODS)[number];
  /** The per-request counters on the hot path, with their label children looked up once. */
  recordRequest(route: string, method: string, status: number, seconds: number): void;
  observeUpstream(route: string, seconds: number): void;
}

export interface MetricsOptions {
  registry: Registry;
  routeNames: readonly string[];
  /** Scraped, not pushed: the cache size is read when Prometheus asks. */
  tokenCacheEntries: () => number;
  /** Scraped: sessions whose usage counts have not reached Redis yet. */
  usageUnsynced?: () => number;
  /** Scraped: chats waiting for a follow-up. */
  usageFollowUpsPending?: () => number;
  defaultMetrics?: boolean;
}

const PREFIX = 'coze_gateway_';

export function createMetrics(options: MetricsOptions): GatewayMetrics {
  const registers = [options.registry];
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: options.registry, prefix: PREFIX });

  const httpRequests = new Counter({ name: `${PREFIX}http_requests_total`, help: 'Requests answered, by route rule name, method and status. A WebSocket upgrade is one request: 101 when it was accepted, or the status it was refused with (499 when its client left first).', labelNames: ['route', 'method', 'status'] as const, registers });
  const httpDuration = new BoundHistogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: 'Time from the request to the end of the response, by route. For a WebSocket upgrade, the time to its answer (the 101 or the refusal), not the life of the socket.',
    labelNames: ['route', 'method'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers,
  });
  const upstreamResponse = new BoundHistogram({
    name: `${PREFIX}upstream_response_seconds`,
    help: 'Time for Coze to send response headers, by route.',
    labelNames: ['route'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  const upstreamFirstByte = new Histogram({
    name: `${PREFIX}upstream_first_byte_seconds`,
    help: 'Time from the request to the first body byte of a streamed (SSE) answer, by route.',
    labelNames: ['route'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  const activeStreams = new Gauge({ name: `${PREFIX}active_streams`, help: 'SSE responses being relayed now.', registers });
  const activeWebsockets = new Gauge({ name: `${PREFIX}active_websockets`, help: 'WebSocket connections being relayed now.', registers });
  const tokenCacheRequests = new Counter({ name: `${PREFIX}token_cache_requests_total`, help: 'Token cache lookups by result.', labelNames: ['result'] as const, registers });
  new Gauge({
    name: `${PREFIX}token_cache_entries`,
    help: 'Sessions holding a cached Coze token.',
    registers,
    collect() {
      this.set(options.tokenCacheEntries());
    },
  });
  const tokenMints = new Counter({ name: `${PREFIX}token_mints_total`, help: 'Token exchanges at Coze by outcome.', labelNames: ['outcome'] as const, registers });
  const tokenMintsHeld = new Counter({
    name: `${PREFIX}token_mints_held_total`,
    help: 'Mints refused without asking Coze, because the token endpoint failed moments ago (the breaker hold).',
    registers,
  });
  const tokenMintDuration = new Histogram({
    name: `${PREFIX}token_mint_duration_seconds`,
    help: 'Duration of one token exchange, retries included.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const authFailures = new Counter({ name: `${PREFIX}auth_failures_total`, help: 'Rejected caller credentials by source and reason.', labelNames: ['source', 'reason'] as const, registers });
  const policyDenials = new Counter({ name: `${PREFIX}policy_denials_total`, help: 'Requests refused by policy, by reason.', labelNames: ['reason'] as const, registers });
  const rateLimited = new Counter({ name: `${PREFIX}rate_limited_total`, help: 'Requests refused by the per-session rate limit.', registers });
  const requestLimits = new Counter({ name: `${PREFIX}request_limits_total`, help: 'Requests refused by a resource limit, by limit: header_count (431), concurrency (429), body_budget (503), body_timeout (408).', labelNames: ['limit'] as const, registers });
  const bufferedRequestBytes = new Gauge({ name: `${PREFIX}buffered_request_bytes`, help: 'Request body bytes held in memory now (JSON bodies being read and checked), out of server.bufferedBodyBudgetBytes.', registers });
  const upstreamErrors = new Counter({ name: `${PREFIX}upstream_errors_total`, help: 'Failures talking to Coze, by kind, over HTTP and WebSocket dials: connect (not reached: refused, DNS, TLS), reset (cut), timeout (no answer, or no WebSocket handshake, within server.upstreamTimeoutSeconds), idle_timeout (an answer stalled), bad_response (a WebSocket handshake Coze refused for another reason than the token), retried_token (a token Coze refused, retried with a fresh one).', labelNames: ['kind'] as const, registers });
  const cozeErrorCodes = new Counter({ name: `${PREFIX}coze_error_codes_total`, help: 'Non-zero Coze error codes seen in JSON answers and SSE error events.', labelNames: ['code'] as const, registers });

  const redisUp = new Gauge({ name: `${PREFIX}redis_up`, help: '1 while the shared Redis is connected (one node, the master named by the Sentinels, or the cluster); 0 while it is down (the gateway serves from memory) or when no Redis is configured.', registers });
  const redisErrors = new Counter({
    name: `${PREFIX}redis_errors_total`,
    help: 'Failed or timed-out Redis commands, by operation. A rate-limit call fell back to this replica\'s own bucket; a step of a mint was retried while Redis stayed connected, then done without Redis; a usage write kept its counts to send again. None failed a request.',
    labelNames: ['operation'] as const,
    registers,
  });
  const tokenMintsUnshared = new Counter({
    name: `${PREFIX}token_mints_unshared_total`,
    help: 'Mints whose token did not go through the shared cache: Redis was down (disconnected, or silent past the give-up bound), or the mint lock lapsed while the mint ran.',
    registers,
  });

  const usageTokens = new Counter({
    name: `${PREFIX}usage_tokens_total`,
    help: 'Coze tokens the answers reported (chat usage, workflow usage), by route and kind (input, output). Per-user figures are in GET /gateway/usage, never in labels.',
    labelNames: ['route', 'kind'] as const,
    registers,
  });
  const budgetRefusals = new Counter({
    name: `${PREFIX}budget_refusals_total`,
    help: 'Requests refused with 429 budget-exceeded before reaching Coze, by window (day, month) and budget (tokens, requests).',
    labelNames: ['window', 'budget'] as const,
    registers,
  });
  const budgetOverrideReloads = new Counter({
    name: `${PREFIX}budget_override_reloads_total`,
    help: 'Reloads of budgets.overridesFile by outcome: ok (the new version is in force) or error (it did not parse; the last good version stays).',
    labelNames: ['outcome'] as const,
    registers,
  });
  const usageFollowUps = new Counter({
    name: `${PREFIX}usage_follow_ups_total`,
    help:
      'Chats nobody followed to their end, followed up by the gateway, by outcome: counted (retrieved ended and counted), abandoned (still waiting for tool outputs at budgets.followUp.maxAgeMs: what it spent is counted), followed (its usage was counted otherwise first: no retrieve needed, or it raced one), claimed (with Redis: another replica counted it; no retrieve), retried (one attempt found it running or could not retrieve it: tried again later), expired (still running, or not retrievable, at budgets.followUp.maxAgeMs: given up), failed (Coze refused the retrieve for good), evicted (dropped at budgets.followUp.maxPending).',
    labelNames: ['outcome'] as const,
    registers,
  });
  new Gauge({
    name: `${PREFIX}usage_follow_ups_pending`,
    help: 'Chats this replica is waiting to follow up (budgets.followUp.*).',
    registers,
    collect() {
      this.set(options.usageFollowUpsPending?.() ?? 0);
    },
  });
  const apiKeyReloads = new Counter({
    name: `${PREFIX}api_key_reloads_total`,
    help: 'Reloads of identity.apiKeys.file by outcome: ok (the new version is in force) or error (it did not parse; the last good version stays).',
    labelNames: ['outcome'] as const,
    registers,
  });
  new Gauge({
    name: `${PREFIX}usage_unsynced`,
    help: 'With Redis: sessions whose usage counts (past windows included) this replica holds but Redis has not confirmed yet, a write on its way included. Above 0 for long means Redis is down: budgets are per replica meanwhile, and the counts reach Redis when it is back.',
    registers,
    collect() {
      this.set(options.usageUnsynced?.() ?? 0);
    },
  });

  // Known label values start at zero, so rate() works from the first scrape.
  for (const operation of REDIS_OPERATIONS) redisErrors.labels(operation).inc(0);
  tokenMintsUnshared.inc(0);
  for (const result of CACHE_RESULTS) tokenCacheRequests.labels(result).inc(0);
  for (const outcome of MINT_OUTCOMES) tokenMints.labels(outcome).inc(0);
  for (const source of [...IDENTITY_SOURCES, 'none'] as const) {
    for (const reason of AUTH_FAILURE_REASONS) authFailures.labels(source, reason).inc(0);
  }
  for (const reason of POLICY_DENIAL_REASONS) policyDenials.labels(reason).inc(0);
  for (const kind of UPSTREAM_ERROR_KINDS) upstreamErrors.labels(kind).inc(0);
  for (const limit of REQUEST_LIMITS) requestLimits.labels(limit).inc(0);
  for (const code of KNOWN_COZE_CODES) cozeErrorCodes.labels(code).inc(0);
  rateLimited.inc(0);
  for (const window of USAGE_WINDOWS) for (const budget of BUDGET_KINDS) budgetRefusals.labels(window, budget).inc(0);
  for (const outcome of ['ok', 'error']) budgetOverrideReloads.labels(outcome).inc(0);
  const followUpChildren = new Map(FOLLOW_UP_OUTCOMES.map((outcome) => [outcome, usageFollowUps.labels(outcome)] as const));
  for (const child of followUpChildren.values()) child.inc(0);
  for (const outcome of ['ok', 'error']) apiKeyReloads.labels(outcome).inc(0);

  // prom-client hashes the label values on every labels() call, and a histogram child's observe
  // hashes them again; the label sets are closed, so each counter child is looked up once and
  // each histogram set bound once (bound-histogram.ts), reached through maps keyed by the values
  // themselves (no key string is built per request: bench/README.md).
  interface RouteChildren {
    upstream: BoundObserver;
    byMethod: Map<string, { duration: BoundObserver; byStatus: Map<number, ReturnType<typeof httpRequests.labels>> }>;
    tokens?: { input: ReturnType<typeof usageTokens.labels>; output: ReturnType<typeof usageTokens.labels> };
  }
  const byRoute = new Map<string, RouteChildren>();
  function routeChildren(route: string): RouteChildren {
    let found = byRoute.get(route);
    if (!found) byRoute.set(route, (found = { upstream: upstreamResponse.bind({ route }), byMethod: new Map() }));
    return found;
  }
  function methodChildren(route: string, method: string) {
    const { byMethod } = routeChildren(route);
    let found = byMethod.get(method);
    if (!found) byMethod.set(method, (found = { duration: httpDuration.bind({ route, method }), byStatus: new Map() }));
    return found;
  }

  const knownCodes = new Set<string>(KNOWN_COZE_CODES);
  const knownMethods = new Set<string>(METHODS);

  return {
    registry: options.registry,
    httpRequests,
    httpDuration,
    upstreamResponse,
    upstreamFirstByte,
    activeStreams,
    activeWebsockets,
    tokenCacheRequests,
    tokenMints,
    tokenMintsHeld,
    tokenMintDuration,
    authFailures,
    policyDenials,
    rateLimited,
    requestLimits,
    bufferedRequestBytes,
    upstreamErrors,
    cozeErrorCodes,
    redisUp,
    redisErrors,
    tokenMintsUnshared,
    usageTokens,
    budgetRefusals,
    budgetOverrideReloads,
    countFollowUp: (outcome) => followUpChildren.get(outcome)?.inc(),
    apiKeyReloads,
    countTokens(route, input, output) {
      const children = routeChildren(route);
      const tokens = (children.tokens ??= { input: usageTokens.labels(route, 'input'), output: usageTokens.labels(route, 'output') });
      if (input > 0) tokens.input.inc(input);
      if (output > 0) tokens.output.inc(output);
    },
    countCozeCode(code) {
      const text = String(code);
      if (text === '0') return;
      cozeErrorCodes.labels(knownCodes.has(text) ? text : 'other').inc();
    },
    recordRequest(route, method, status, seconds) {
      const children = methodChildren(route, method);
      let counter = children.byStatus.get(status);
      if (!counter) children.byStatus.set(status, (counter = httpRequests.labels(route, method, String(status))));
      counter.inc();
      children.duration.observe(seconds);
    },
    observeUpstream(route, seconds) {
      routeChildren(route).upstream.observe(seconds);
    },
    methodLabel(method) {
      return method && knownMethods.has(method) ? (method as (typeof METHODS)[number]) : 'OTHER';
    },
  };
}
