import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { lookupToken } from '../coze/coze-errors.js';
import type { TokenCache } from '../coze/token-cache.js';
import { GatewayError } from '../errors.js';
import type { createCors } from '../http/cors.js';
import { scrubRequestHeaders } from '../http/headers.js';
import { sessionHash, type Logger } from '../log/logger.js';
import { admit, recordDenial, type AdmissionTrace, type AdmitDeps } from './admit.js';
import { sendError } from './error-response.js';
import { toUpstreamError, type Forwarder, type UpstreamResponse } from './forwarder.js';
import type { CompiledEndpoint } from '../policy/route-table.js';
import type { BodyBudget } from './body-budget.js';
import { planBody, type BodyPlan } from './request-body.js';
import { relayResponse, type RelayContext } from './relay.js';
import { filterResponse } from './response-filter.js';
import { InspectionIdle, inspectResponse } from './rewrite-response.js';
import { VENDING_PATH, vendToken } from '../vending/token-vending.js';
import type { TokenKeys } from '../coze/mint-request.js';
import { serveUsage } from '../usage/usage-endpoint.js';
import type { RequestUsage } from '../usage/usage-observer.js';
import type { UsageService } from '../usage/usage-service.js';

export interface ProxyHandlerDeps extends AdmitDeps {
  tokens: TokenCache;
  forwarder: Forwarder;
  cors: ReturnType<typeof createCors>;
  logger: Logger;
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

interface RequestLog {
  logId: string | undefined;
  bytesIn: number;
  bytesOut: number;
  usage?: RequestUsage | undefined;
}

class ClientGone extends Error {}
class UpstreamDeadline extends Error {}

/**
 * The proxied path, on plain node:http (express costs ~40% of throughput here, SPEC section 10).
 * One request walks: CORS preflight, admission (path, route, identity, rate limit, session),
 * body policy, token, forward with one retry on a revoked token, relay.
 */
export function createProxyHandler(deps: ProxyHandlerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const started = performance.now();
    const requestId = randomUUID();
    const trace: AdmissionTrace = { route: 'unmatched', path: '-', source: undefined, sessionName: undefined };
    const log: RequestLog = { logId: undefined, bytesIn: 0, bytesOut: 0 };
    const method = deps.metrics.methodLabel(req.method);

    res.setHeader('x-request-id', requestId);
    if (deps.isDraining()) res.setHeader('connection', 'close');
    for (const [name, value] of Object.entries(deps.cors.responseHeaders(req.headers.origin))) res.setHeader(name, value);

    res.on('close', () => {
      log.usage?.end();
      const status = res.writableFinished ? res.statusCode : 499;
      const seconds = (performance.now() - started) / 1000;
      deps.metrics.recordRequest(trace.route, method, status, seconds);
      // One line per request; no query string, no header, no body, no raw session_name.
      deps.logger.info({
        requestId,
        method: req.method,
        route: trace.route,
        path: trace.path,
        status,
        durationMs: Math.round(seconds * 1000),
        source: trace.source,
        session: trace.sessionName ? sessionHash(trace.sessionName) : undefined,
        cozeLogId: log.logId,
        bytesIn: log.bytesIn,
        bytesOut: log.bytesOut,
        tokens: log.usage?.counted,
      });
    });

    const preflight = deps.cors.preflight(req.headers);
    if (preflight) {
      res.writeHead(preflight.status, preflight.headers).end();
      return;
    }

    const wait = watchTheWait(req, res);
    handle(req, res, requestId, trace, log, wait)
      .catch((err: unknown) => {
        if (err instanceof ClientGone) return;
        if (!(err instanceof GatewayError)) deps.logger.error({ requestId, route: trace.route, err: describe(err) }, 'request failed');
        sendError(req, res, err, requestId);
      })
      .finally(wait.release);
  };

  async function handle(req: IncomingMessage, res: ServerResponse, requestId: string, trace: AdmissionTrace, log: RequestLog, wait: Wait): Promise<void> {
    const target = (req.url ?? '').split('?')[0];
    if (target === VENDING_PATH) {
      if (!deps.vendingEnabled || req.method !== 'POST') throw new GatewayError('not-found');
      const vending = await admit(deps, req, trace, { endpoint: deps.vendingEndpoint });
      res.once('close', vending.release);
      await vendToken(req, res, vending, deps.tokens, deps.tokenKeys ? deps.tokenKeys.vended(vending.identity, vending.sessionName) : vending.tokenKey);
      return;
    }
    if (target === deps.usageEndpoint?.path && deps.usage) {
      if (req.method !== 'GET') throw new GatewayError('not-found');
      const asking = await admit(deps, req, trace, { endpoint: deps.usageEndpoint });
      res.once('close', asking.release);
      await serveUsage(res, asking.identity, deps.usage.report);
      return;
    }
    const admission = await admit(deps, req, trace);
    res.once('close', admission.release);
    const { endpoint, route, sessionName, tokenKey } = admission;
    if (endpoint.transport === 'websocket') throw new GatewayError('route-forbidden', { detail: 'This endpoint takes WebSocket upgrades only.' });

    let body: BodyPlan;
    try {
      body = await planBody(req, endpoint, sessionName, {
        maxBytes: deps.maxBodyBytes,
        budget: deps.bodyBudget,
        deadlineMs: deps.bodyReadTimeoutMs,
        // The bytes stay reserved while the body is kept for a replay: until the request ends.
        onReserved: (bytes) => res.once('close', () => deps.bodyBudget.give(bytes)),
        onLimit: (limit) => deps.metrics.requestLimits.labels(limit).inc(),
      });
    } catch (err) {
      recordDenial(deps.metrics, err);
      throw err;
    }

    const headers: OutgoingHttpHeaders = scrubRequestHeaders(req.headers, { forward: deps.forwardHeaders });
    if (body.contentType) headers['content-type'] = body.contentType;
    headers['x-request-id'] = requestId;
    // Identity keeps the bytes inspectable (401/4100 detection, SSE error codes) and SSE unbuffered.
    headers['accept-encoding'] = 'identity';
    if (body.length !== undefined && (body.length > 0 || req.method !== 'GET')) headers['content-length'] = String(body.length);
    const path = admission.query ? `${admission.path}?${admission.query}` : admission.path;

    let token = await lookupToken(deps.tokens, tokenKey);
    let retriedToken = false;
    let retriedReset = false;
    for (;;) {
      // The forwarder copies the headers when it sends them, so one object serves every attempt.
      headers.authorization = `Bearer ${token.accessToken}`;
      const attemptStarted = performance.now();
      let upstream: UpstreamResponse;
      try {
        upstream = await sendOnce(res, req.method ?? 'GET', path, headers, body);
      } catch (err) {
        if (err instanceof ClientGone) throw err;
        if (err instanceof GatewayError) throw err;
        const failure = err instanceof UpstreamDeadline ? undefined : toUpstreamError(err as Error);
        if (!failure || failure.failure === 'timeout') {
          deps.metrics.upstreamErrors.labels('timeout').inc();
          throw new GatewayError('upstream-timeout');
        }
        // A kept-alive connection that failed before any byte of the answer: the race where Coze
        // closes an idle connection just as it is reused, so the request is sent once more
        // (SPEC section 10). A reset on a fresh connection, or after part of an answer, may come
        // after Coze acted on the request (a chat created and billed): never replayed.
        if (failure.staleConnection && body.replayable && !retriedReset) {
          retriedReset = true;
          deps.metrics.upstreamErrors.labels('reset').inc();
          continue;
        }
        deps.metrics.upstreamErrors.labels(failure.failure === 'reset' ? 'reset' : 'connect').inc();
        throw new GatewayError('upstream-unavailable', { detail: failure.code ? `(${failure.code})` : undefined });
      }
      wait.answer = upstream;
      deps.metrics.observeUpstream(route, (performance.now() - attemptStarted) / 1000);
      const logIdHeader = upstream.headers['x-tt-logid'];
      log.logId = typeof logIdHeader === 'string' ? logIdHeader : undefined;

      let inspected;
      try {
        inspected = await inspectResponse(upstream, { idleTimeoutMs: deps.streamIdleTimeoutMs });
      } catch (err) {
        if (res.destroyed) throw new ClientGone();
        if (err instanceof InspectionIdle) {
          deps.metrics.upstreamErrors.labels('idle_timeout').inc();
          throw new GatewayError('upstream-timeout', { detail: '(Coze sent part of its answer, then nothing for server.streamIdleTimeoutSeconds.)' });
        }
        deps.metrics.upstreamErrors.labels('reset').inc();
        throw new GatewayError('upstream-unavailable', { detail: '(the response was cut)' });
      }
      if (inspected.cozeCode !== undefined) deps.metrics.countCozeCode(inspected.cozeCode);
      if (endpoint.rules.filterResponse && !inspected.tokenRejected) inspected = await filterResponse(upstream, inspected, endpoint.rules.filterResponse, { idleTimeoutMs: deps.streamIdleTimeoutMs });
      if (inspected.tokenRejected) {
        const retry = body.replayable && !retriedToken;
        // Let go of the upstream connection before anything else can throw.
        if (retry && !inspected.complete) upstream.body.destroy();
        await deps.tokens.invalidateIfSame(tokenKey, token.accessToken);
        if (retry) {
          retriedToken = true;
          deps.metrics.upstreamErrors.labels('retried_token').inc();
          token = await lookupToken(deps.tokens, tokenKey);
          continue;
        }
      }
      log.bytesIn = body.bytesIn();
      log.usage = deps.usage?.track(endpoint, admission.identity);
      relayResponse({
        upstream,
        res,
        route,
        framing: endpoint.framing,
        inspected,
        metrics: deps.metrics,
        streams: deps.streams,
        idleTimeoutMs: deps.streamIdleTimeoutMs,
        requestStarted: attemptStarted,
        onBytes: (n) => {
          log.bytesOut += n;
        },
        usage: log.usage,
      });
      return;
    }
  }

  /**
   * One upstream attempt, bounded by the time-to-headers deadline and the client's presence.
   * The forwarder calls back only after send() returns, so the timer and listener are armed.
   */
  function sendOnce(res: ServerResponse, method: string, path: string, headers: OutgoingHttpHeaders, body: BodyPlan): Promise<UpstreamResponse> {
    if (res.destroyed) return Promise.reject(new ClientGone());
    return new Promise((resolve, reject) => {
      const upstream = deps.forwarder.send({ method, path, headers, body: body.open((err) => upstream.abort(err)) }, (err, answer) => {
        clearTimeout(timer);
        res.off('close', onClose);
        if (answer) resolve(answer);
        else reject(err);
      });
      const timer = setTimeout(() => upstream.abort(new UpstreamDeadline()), deps.upstreamTimeoutMs);
      const onClose = () => {
        if (!res.writableFinished) upstream.abort(new ClientGone());
      };
      res.on('close', onClose);
    });
  }
}

/** The client's side of a request while the gateway works for it, until the relay takes over. */
interface Wait {
  /** Coze's answer from its first byte: cut if the client leaves before the relay watches it. */
  answer: UpstreamResponse | undefined;
  release(): void;
}

/**
 * While the gateway waits for Coze the client has nothing to send, and the socket's inactivity
 * timeout (counted from the request's last byte) would cut it just before the gateway's own
 * deadlines answer 504: those bound the wait instead, and an upload still arriving is cut as
 * Node would cut it. And from an answer's first byte until the relay watches the client itself
 * (before it, sendOnce does), a client that leaves cuts the answer, so Coze stops and the pooled
 * connection is not left paused under a body nobody reads.
 */
function watchTheWait(req: IncomingMessage, res: ServerResponse): Wait {
  const onSocketIdle = (socket: Socket) => {
    if (!req.complete) socket.destroy();
  };
  const onClientGone = () => {
    if (!res.writableFinished) wait.answer?.body.destroy();
  };
  const wait: Wait = {
    answer: undefined,
    release() {
      res.off('timeout', onSocketIdle);
      res.off('close', onClientGone);
    },
  };
  res.on('timeout', onSocketIdle);
  res.on('close', onClientGone);
  return wait;
}

function describe(err: unknown): { type: string; message: string } {
  return err instanceof Error ? { type: err.name, message: err.message } : { type: typeof err, message: 'non-error thrown' };
}
