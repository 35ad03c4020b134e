import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { lookupToken } from '../coze/coze-errors.js';
import type { TokenCache } from '../coze/token-cache.js';
import type { CozeToken } from '../coze/token-client.js';
import { GatewayError } from '../errors.js';
import type { createCors } from '../http/cors.js';
import { scrubRequestHeaders } from '../http/headers.js';
import { targetForLog } from '../http/request-guard.js';
import type { Logger } from '../log/logger.js';
import { createRequestLog } from '../log/request-log.js';
import { STEPS, type Maybe } from '../maybe.js';
import { admit, recordDenial, UNTRACED_PATH, type Admission, type AdmissionTrace, type AdmitDeps } from './admit.js';
import { sendError } from './error-response.js';
import { toUpstreamError, type Forwarder, type UpstreamCall, type UpstreamResponse } from './forwarder.js';
import { PREFLIGHT_ROUTE, UNMATCHED_ROUTE, type CompiledEndpoint } from '../policy/route-table.js';
import type { BodyBudget } from './body-budget.js';
import { planBody, type BodyPlan } from './request-body.js';
import { relayResponse, type RelayContext } from './relay.js';
import { filterResponse } from './response-filter.js';
import { InspectionIdle, inspectResponse, type InspectedResponse } from './rewrite-response.js';
import { createTokenVendor, VENDING_PATH } from '../vending/token-vending.js';
import type { TokenKeys } from '../coze/mint-request.js';
import { serveUsage } from '../usage/usage-endpoint.js';
import type { RequestUsage } from '../usage/usage-observer.js';
import type { UsageService } from '../usage/usage-service.js';

export interface ProxyHandlerDeps extends AdmitDeps {
  tokens: TokenCache;
  /** The clock of token vending's re-mint floor; Date.now when absent. */
  now?: () => number;
  forwarder: Forwarder;
  cors: ReturnType<typeof createCors>;
  logger: Logger;
  /** The log's keyed pseudonym of a session_name (createSessionHasher). */
  sessionHash(sessionName: string): string;
  maxBodyBytes: number;
  /** The memory shared by the JSON bodies being held (server.bufferedBodyBudgetBytes). */
  bodyBudget: BodyBudget;
  bodyReadTimeoutMs: number;
  /** policy.forwardHeaders: names forwarded beyond the built-in allowlist (headers.ts). */
  forwardHeaders: readonly string[];
  upstreamTimeoutMs: number;
  streamIdleTimeoutMs: number;
  isDraining(): boolean;
  /** `POST /gateway/token` answers only when tokenVending.enabled; otherwise it is a 404. */
  vendingEnabled: boolean;
  vendingEndpoint: CompiledEndpoint;
  /** Open SSE responses register here so a drain can end them with a final event. */
  streams: Set<RelayContext>;
  /** Usage counting and GET /gateway/usage (issue 18). */
  usage?: Pick<UsageService, 'track' | 'report'>;
  /** `GET /gateway/usage`, admitted like any request (src/policy/endpoints.ts USAGE_ENDPOINT). */
  usageEndpoint?: CompiledEndpoint;
  /** The keys of proxied and vended tokens, when tokens carry more than a session_name. */
  tokenKeys?: Pick<TokenKeys, 'proxied' | 'vended'>;
}

class ClientGone extends Error {}
class UpstreamDeadline extends Error {}

type LogState = { logId: string | undefined; bytesIn: number; bytesOut: number; usage?: RequestUsage | undefined; error: string | undefined };

/**
 * The proxied path, on plain node:http (express costs ~40% of throughput here, SPEC section 10).
 * One request walks: CORS preflight, admission (path, route, identity, rate limit, session),
 * body policy, token, forward with one retry on a revoked token, relay.
 *
 * The walk is written once, as named continuations chained through `Steps` (src/maybe.ts): a
 * step that can answer at once (a verified JWT, a local rate-limit decision, a fresh token, no
 * body) calls the next directly, so a cached request reaches the forwarder with no promise; a
 * step that waits (JWKS, Redis, a mint, a body) goes through the same continuations later.
 * `fail` is the only way out with an error: it alone answers with an error and logs it.
 */
export function createProxyHandler(deps: ProxyHandlerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const steps = deps.steps ?? STEPS;
  const readOptions = { idleTimeoutMs: deps.streamIdleTimeoutMs };
  const onLimit = (limit: 'body_budget' | 'body_timeout') => deps.metrics.requestLimits.labels(limit).inc();
  const requestLog = createRequestLog(deps.logger);
  const vendToken = createTokenVendor(deps.tokens, deps.now);
  const usagePath = deps.usage ? deps.usageEndpoint?.path : undefined;
  const usageQuery = `${usagePath}?`;

  return (req, res) => {
    const started = performance.now();
    const requestId = randomUUID();
    const trace: AdmissionTrace = { route: UNMATCHED_ROUTE, path: UNTRACED_PATH, source: undefined, sessionName: undefined };
    const log: LogState = { logId: undefined, bytesIn: 0, bytesOut: 0, error: undefined };
    const method = deps.metrics.methodLabel(req.method);

    // The gateway's own response headers, given with the status line rather than set on `res`
    // now: one setHeader before writeHead sends every header of Coze's answer through setHeader.
    const own: OutgoingHttpHeaders = { 'x-request-id': requestId };
    if (deps.isDraining()) own.connection = 'close';
    if (req.headers.origin !== undefined) Object.assign(own, deps.cors.responseHeaders(req.headers.origin));

    const wait = watchTheWait(req, res);
    res.on('close', () => {
      log.usage?.end();
      const status = res.writableFinished ? res.statusCode : 499;
      const seconds = (performance.now() - started) / 1000;
      deps.metrics.recordRequest(trace.route, method, status, seconds);
      // One line per request; no query string, no header, no body, no raw session_name.
      requestLog({
        requestId,
        method: req.method,
        route: trace.route,
        path: trace.path,
        status,
        durationMs: Math.round(seconds * 1000),
        source: trace.source,
        session: trace.sessionName ? deps.sessionHash(trace.sessionName) : undefined,
        cozeLogId: log.logId,
        bytesIn: log.bytesIn,
        bytesOut: log.bytesOut,
        tokens: log.usage?.counted,
        error: log.error,
      });
      wait.closed();
    });

    const preflight = deps.cors.preflight(req.headers);
    if (preflight) {
      // Its own label: the gateway answers a preflight itself, whatever its path, and counting it
      // under the route it asks about would skew that route's latency and traffic.
      trace.route = PREFLIGHT_ROUTE;
      trace.path = targetForLog(req.url ?? '');
      res.writeHead(preflight.status, Object.assign(own, preflight.headers)).end();
      return;
    }

    const fail = (err: unknown): void => {
      if (!(err instanceof ClientGone)) {
        if (!(err instanceof GatewayError)) deps.logger.error({ requestId, route: trace.route, err: describe(err) }, 'request failed');
        log.error = err instanceof GatewayError ? err.reason : 'internal-error';
        // Refused before admission saw the path (token vending off, a wrong method on /gateway/usage).
        if (trace.path === UNTRACED_PATH) trace.path = targetForLog(req.url ?? '');
        if (!res.headersSent) setHeaders(res, own);
        sendError(req, res, err, requestId);
      }
      wait.release();
    };
    try {
      handle(req, res, requestId, own, trace, log, wait, fail);
    } catch (err) {
      fail(err);
    }
  };

  function handle(req: IncomingMessage, res: ServerResponse, requestId: string, own: OutgoingHttpHeaders, trace: AdmissionTrace, log: LogState, wait: Wait, fail: (err: unknown) => void): void {
    const url = req.url ?? '';
    if (url === VENDING_PATH || url.startsWith(VENDING_QUERY)) {
      if (!deps.vendingEnabled || req.method !== 'POST') throw new GatewayError('not-found');
      setHeaders(res, own);
      steps.after(
        admit(deps, req, trace, { endpoint: deps.vendingEndpoint }),
        (vending) => {
          wait.hold(vending.release);
          steps.after(vendToken(req, res, vending, deps.tokenKeys ? deps.tokenKeys.vended(vending.identity, vending.sessionName) : vending.tokenKey), wait.release, fail);
        },
        fail,
      );
      return;
    }
    if (usagePath !== undefined && deps.usage && (url === usagePath || url.startsWith(usageQuery))) {
      if (req.method !== 'GET') throw new GatewayError('not-found');
      setHeaders(res, own);
      const usage = deps.usage;
      steps.after(
        admit(deps, req, trace, { endpoint: deps.usageEndpoint }),
        (asking) => {
          wait.hold(asking.release);
          steps.after(serveUsage(res, asking.identity, asking.sessionName, usage.report), wait.release, fail);
        },
        fail,
      );
      return;
    }

    // The request's state, filled in as the steps go.
    let admission: Admission;
    let body: BodyPlan;
    let headers: OutgoingHttpHeaders;
    let path: string;
    let token: CozeToken;
    let upstream: UpstreamResponse;
    let attemptStarted = 0;
    let retriedToken = false;
    let retriedReset = false;
    // Counted against the budgets at admission; kept once sent to Coze, or refused for its body.
    let keepsCount = false;

    steps.after(admit(deps, req, trace, HTTP_ADMISSION), admitted, fail);

    function admitted(granted: Admission): void {
      admission = granted;
      wait.hold(() => {
        granted.release();
        if (!keepsCount) granted.uncount();
      });
      let plan: Maybe<BodyPlan>;
      try {
        plan = planBody(req, granted.endpoint, granted.sessionName, {
          maxBytes: deps.maxBodyBytes,
          budget: deps.bodyBudget,
          deadlineMs: deps.bodyReadTimeoutMs,
          // The bytes stay reserved while the body is kept for a replay: until the request ends.
          onReserved: (bytes) => res.once('close', () => deps.bodyBudget.give(bytes)),
          onLimit,
        });
      } catch (err) {
        refuseBody(err);
        return;
      }
      steps.after(plan, bodyPlanned, refuseBody);
    }

    function refuseBody(err: unknown): void {
      // The caller's own body (400, 403, 408, 413, 415) is counted; the gateway's lack of memory (503) is not.
      if (err instanceof GatewayError && err.status < 500) keepsCount = true;
      recordDenial(deps.metrics, err);
      fail(err);
    }

    function bodyPlanned(plan: BodyPlan): void {
      body = plan;
      headers = scrubRequestHeaders(req.headers, { forward: deps.forwardHeaders });
      if (plan.contentType) headers['content-type'] = plan.contentType;
      headers['x-request-id'] = requestId;
      // Identity keeps the bytes inspectable (401/4100 detection, SSE error codes) and SSE unbuffered.
      headers['accept-encoding'] = 'identity';
      if (plan.length !== undefined && (plan.length > 0 || req.method !== 'GET')) headers['content-length'] = String(plan.length);
      path = admission.query ? `${admission.path}?${admission.query}` : admission.path;
      steps.after(lookupToken(deps.tokens, admission.tokenKey), send, fail);
    }

    /** One upstream attempt with `current`; the first, or a retry after a reset or a revoked token. */
    function send(current: CozeToken): void {
      token = current;
      if (!res.destroyed) keepsCount = true;
      // The forwarder copies the headers when it sends them, so one object serves every attempt.
      headers.authorization = `Bearer ${current.accessToken}`;
      attemptStarted = performance.now();
      sendOnce(res, wait, req.method ?? 'GET', path, headers, body, answered);
    }

    function answered(err: Error | null, answer?: UpstreamResponse): void {
      try {
        if (!answer) {
          upstreamFailed(err as Error);
          return;
        }
        upstream = answer;
        wait.answer = answer;
        deps.metrics.observeUpstream(admission.route, (performance.now() - attemptStarted) / 1000);
        const logIdHeader = answer.headers['x-tt-logid'];
        log.logId = typeof logIdHeader === 'string' ? logIdHeader : undefined;
        inspectResponse(answer, readOptions, inspected);
      } catch (thrown) {
        fail(thrown);
      }
    }

    function upstreamFailed(err: Error): void {
      if (err instanceof ClientGone || err instanceof GatewayError) throw err;
      const failure = err instanceof UpstreamDeadline ? undefined : toUpstreamError(err);
      if (!failure || failure.failure === 'timeout') {
        deps.metrics.upstreamErrors.labels('timeout').inc();
        throw new GatewayError('upstream-timeout');
      }
      // An idempotent request on a kept-alive connection that failed before any byte of the
      // answer: the race where Coze closes an idle connection just as it is reused, so it is
      // sent once more (SPEC section 10). A POST there, or a reset on a fresh connection or
      // after part of an answer, may come after Coze acted on the request (a chat created and
      // billed): never replayed (forwarder.ts, REPLAYABLE_METHODS).
      if (failure.resendable && body.replayable && !retriedReset) {
        retriedReset = true;
        deps.metrics.upstreamErrors.labels('reset').inc();
        send(token);
        return;
      }
      deps.metrics.upstreamErrors.labels(failure.failure === 'reset' ? 'reset' : 'connect').inc();
      throw new GatewayError('upstream-unavailable', { detail: failure.code ? `(${failure.code})` : undefined });
    }

    function inspected(err: Error | null, result?: InspectedResponse): void {
      try {
        if (!result) throw inspectionFailure(err as Error);
        if (result.cozeCode !== undefined) deps.metrics.countCozeCode(result.cozeCode);
        const filter = admission.endpoint.rules.filterResponse;
        steps.after(filter && !result.tokenRejected ? filterResponse(upstream, result, filter, readOptions) : result, checked, (err) =>
          fail(err instanceof InspectionIdle ? inspectionFailure(err) : err),
        );
      } catch (thrown) {
        fail(thrown);
      }
    }

    function inspectionFailure(err: Error): Error {
      if (res.destroyed) return new ClientGone();
      if (err instanceof InspectionIdle) {
        deps.metrics.upstreamErrors.labels('idle_timeout').inc();
        return new GatewayError('upstream-timeout', { detail: '(Coze sent part of its answer, then nothing for server.streamIdleTimeoutSeconds.)' });
      }
      deps.metrics.upstreamErrors.labels('reset').inc();
      return new GatewayError('upstream-unavailable', { detail: '(the response was cut)' });
    }

    function checked(result: InspectedResponse): void {
      if (!result.tokenRejected) {
        relay(result);
        return;
      }
      const retry = body.replayable && !retriedToken;
      // Let go of the upstream connection before anything else can throw.
      if (retry && !result.complete) upstream.cancel();
      steps.after(
        deps.tokens.invalidateIfSame(admission.tokenKey, token.accessToken),
        () => {
          if (!retry) {
            relay(result);
            return;
          }
          retriedToken = true;
          deps.metrics.upstreamErrors.labels('retried_token').inc();
          steps.after(lookupToken(deps.tokens, admission.tokenKey), send, fail);
        },
        fail,
      );
    }

    function relay(result: InspectedResponse): void {
      log.bytesIn = body.bytesIn();
      log.usage = deps.usage?.track(admission.endpoint, admission.sessionName, admission.tokenKey);
      const relaying = relayResponse({
        upstream,
        res,
        ownHeaders: own,
        route: admission.route,
        framing: admission.endpoint.framing,
        inspected: result,
        metrics: deps.metrics,
        streams: deps.streams,
        idleTimeoutMs: deps.streamIdleTimeoutMs,
        requestStarted: attemptStarted,
        onBytes: (n) => {
          log.bytesOut += n;
        },
        usage: log.usage,
      });
      wait.relaying = relaying;
      wait.release();
    }
  }

  /**
   * One upstream attempt, bounded by the time-to-headers deadline and the client's presence.
   * The forwarder calls back only after send() returns, so the timer and listener are armed.
   */
  function sendOnce(res: ServerResponse, wait: Wait, method: string, path: string, headers: OutgoingHttpHeaders, body: BodyPlan, done: (err: Error | null, answer?: UpstreamResponse) => void): void {
    if (res.destroyed) {
      done(new ClientGone());
      return;
    }
    const upstream = deps.forwarder.send({ method, path, headers, body: body.open((err) => upstream.abort(err)) }, (err, answer) => {
      clearTimeout(timer);
      wait.attempt = undefined;
      done(err, answer);
    });
    const timer = setTimeout(() => upstream.abort(new UpstreamDeadline()), deps.upstreamTimeoutMs);
    wait.attempt = upstream;
  }
}

const VENDING_QUERY = `${VENDING_PATH}?`;
const HTTP_ADMISSION = { transport: 'http' } as const;

/** The gateway's own headers on a response it writes itself (an error, a token, usage figures). */
function setHeaders(res: ServerResponse, headers: OutgoingHttpHeaders): void {
  for (const name of Object.keys(headers)) res.setHeader(name, headers[name] as string);
}

/**
 * The client's side of a request while the gateway works for it. One `close` listener per
 * request (the handler's) reaches all of it through `closed()`: listeners added and removed per
 * step were a measurable share of a cached request (bench/README.md).
 */
interface Wait {
  /** The upstream attempt in flight (sendOnce): aborted if the client leaves. */
  attempt: UpstreamCall | undefined;
  /** Coze's answer from its first byte: cut if the client leaves before the relay watches it. */
  answer: UpstreamResponse | undefined;
  /**
   * Takes the admission's release (the session's concurrency slot), called once the response
   * closes; at once if it closed already (the client left while an admission step waited).
   */
  hold(release: () => void): void;
  /** Set as the relay takes over: it still relays a body, under its own idle timer. */
  relaying: boolean;
  /** The relay (or the local answer) has taken over the client. */
  release(): void;
  /** The response closed: called by the handler's one `close` listener, after the log line. */
  closed(): void;
}

/**
 * While the gateway waits for Coze the client has nothing to send, and the socket's inactivity
 * timeout (counted from the request's last byte) would cut it just before the gateway's own
 * deadlines answer 504: those bound the wait instead, and an upload still arriving is cut as
 * Node would cut it. And until the relay watches the client itself, a client that leaves aborts
 * the attempt in flight, or cuts the answer from its first byte, so Coze stops and the pooled
 * connection is not left paused under a body nobody reads.
 *
 * While a body is relayed the socket's timeout (server.streamIdleTimeoutSeconds, the relay's
 * own) is ignored too: bytes the relay holds (a partial SSE event) or none at all since the
 * headers leave the socket as quiet as Coze, and Node's destroy would beat the relay's timer to
 * it, cutting the stream without its final event. The relay's timer always ends the stream;
 * once it has (its final event unread), or outside a relay, the quiet socket is let go.
 */
function watchTheWait(req: IncomingMessage, res: ServerResponse): Wait {
  let watching = true;
  let closed = false;
  let slot: (() => void) | undefined;
  const onSocketIdle = (socket: Socket) => {
    if (watching ? req.complete : wait.relaying && !res.writableEnded) return;
    socket.destroy();
  };
  const wait: Wait = {
    attempt: undefined,
    answer: undefined,
    hold(release) {
      if (closed) release();
      else slot = release;
    },
    relaying: false,
    release() {
      watching = false;
    },
    closed() {
      closed = true;
      if (!res.writableFinished) {
        wait.attempt?.abort(new ClientGone());
        if (watching) wait.answer?.cancel();
      }
      wait.release();
      slot?.();
    },
  };
  res.on('timeout', onSocketIdle);
  return wait;
}

function describe(err: unknown): { type: string; message: string } {
  return err instanceof Error ? { type: err.name, message: err.message } : { type: typeof err, message: 'non-error thrown' };
}
