import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { mintErrorToGatewayError } from '../coze/coze-errors.js';
import type { TokenCache } from '../coze/token-cache.js';
import type { CozeToken } from '../coze/token-client.js';
import { GatewayError } from '../errors.js';
import type { createCors } from '../http/cors.js';
import { scrubRequestHeaders } from '../http/headers.js';
import { sessionHash, type Logger } from '../log/logger.js';
import { admit, recordDenial, type AdmissionTrace, type AdmitDeps } from './admit.js';
import { sendError } from './error-response.js';
import type { Forwarder } from './forwarder.js';
import type { CompiledEndpoint } from '../policy/route-table.js';
import type { BodyBudget } from './body-budget.js';
import { planBody, type BodyPlan } from './request-body.js';
import { relayResponse, type RelayContext } from './relay.js';
import { filterResponse } from './response-filter.js';
import { inspectResponse } from './rewrite-response.js';
import { VENDING_PATH, vendToken } from '../vending/token-vending.js';

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
    const log = { logId: undefined as string | undefined, bytesIn: 0, bytesOut: 0 };
    const method = deps.metrics.methodLabel(req.method);

    res.setHeader('x-request-id', requestId);
    if (deps.isDraining()) res.setHeader('connection', 'close');
    for (const [name, value] of Object.entries(deps.cors.responseHeaders(req.headers.origin))) res.setHeader(name, value);

    res.on('close', () => {
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
      });
    });

    const preflight = deps.cors.preflight(req.headers);
    if (preflight) {
      res.writeHead(preflight.status, preflight.headers).end();
      return;
    }

    handle(req, res, requestId, trace, log).catch((err: unknown) => {
      if (err instanceof ClientGone) return;
      if (!(err instanceof GatewayError)) deps.logger.error({ requestId, route: trace.route, err: describe(err) }, 'request failed');
      sendError(req, res, err, requestId);
    });
  };

  async function handle(req: IncomingMessage, res: ServerResponse, requestId: string, trace: AdmissionTrace, log: { logId: string | undefined; bytesIn: number; bytesOut: number }): Promise<void> {
    if ((req.url ?? '').split('?')[0] === VENDING_PATH) {
      if (!deps.vendingEnabled || req.method !== 'POST') throw new GatewayError('not-found');
      const vending = await admit(deps, req, trace, { endpoint: deps.vendingEndpoint });
      res.once('close', vending.release);
      await vendToken(req, res, vending, deps.tokens);
      return;
    }
    const admission = await admit(deps, req, trace);
    res.once('close', admission.release);
    const { endpoint, route, sessionName } = admission;
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
    req.url = admission.query ? `${admission.path}?${admission.query}` : admission.path;

    let token = await lookupToken(sessionName);
    let retriedToken = false;
    let retriedReset = false;
    for (;;) {
      req.headers = { ...headers, authorization: `Bearer ${token.accessToken}` } as IncomingHttpHeaders;
      const attemptStarted = performance.now();
      let proxyRes: IncomingMessage;
      try {
        proxyRes = await sendOnce(req, res, body);
      } catch (err) {
        if (err instanceof ClientGone) throw err;
        if (err instanceof GatewayError) throw err;
        if (err instanceof UpstreamDeadline) {
          deps.metrics.upstreamErrors.labels('timeout').inc();
          throw new GatewayError('upstream-timeout');
        }
        const code = (err as NodeJS.ErrnoException).code;
        // A keep-alive socket the upstream closed just as we reused it: safe to send again.
        if (code === 'ECONNRESET' && body.replayable && !retriedReset) {
          retriedReset = true;
          deps.metrics.upstreamErrors.labels('reset').inc();
          continue;
        }
        deps.metrics.upstreamErrors.labels(code === 'ECONNRESET' ? 'reset' : 'connect').inc();
        throw new GatewayError('upstream-unavailable', { detail: code ? `(${code})` : undefined });
      }
      deps.metrics.observeUpstream(route, (performance.now() - attemptStarted) / 1000);
      const logIdHeader = proxyRes.headers['x-tt-logid'];
      log.logId = typeof logIdHeader === 'string' ? logIdHeader : undefined;

      let inspected;
      try {
        inspected = await inspectResponse(proxyRes);
      } catch {
        deps.metrics.upstreamErrors.labels('reset').inc();
        throw new GatewayError('upstream-unavailable', { detail: '(the response was cut)' });
      }
      if (inspected.cozeCode !== undefined) deps.metrics.countCozeCode(inspected.cozeCode);
      if (endpoint.rules.filterResponse && !inspected.tokenRejected) inspected = await filterResponse(proxyRes, inspected, endpoint.rules.filterResponse);
      if (inspected.tokenRejected) {
        await deps.tokens.invalidateIfSame(sessionName, token.accessToken);
        if (body.replayable && !retriedToken) {
          retriedToken = true;
          deps.metrics.upstreamErrors.labels('retried_token').inc();
          if (!inspected.complete) proxyRes.destroy();
          token = await lookupToken(sessionName);
          continue;
        }
      }
      log.bytesIn = body.bytesIn();
      relayResponse({
        proxyRes,
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
      });
      return;
    }
  }

  async function lookupToken(sessionName: string): Promise<CozeToken> {
    try {
      return (await deps.tokens.get(sessionName)).token;
    } catch (err) {
      throw mintErrorToGatewayError(err);
    }
  }

  /** One upstream attempt, bounded by the time-to-headers deadline and the client's presence. */
  function sendOnce(req: IncomingMessage, res: ServerResponse, body: BodyPlan): Promise<IncomingMessage> {
    if (res.destroyed) return Promise.reject(new ClientGone());
    let failure: Error | undefined;
    const upstream = deps.forwarder.send(req, res, body.open((err) => upstream.abort(err)));
    const timer = setTimeout(() => upstream.abort((failure = new UpstreamDeadline())), deps.upstreamTimeoutMs);
    const onClose = () => {
      if (!res.writableFinished) upstream.abort((failure = new ClientGone()));
    };
    res.on('close', onClose);
    return upstream.response
      .catch((err: unknown) => {
        throw failure ?? err;
      })
      .finally(() => {
        clearTimeout(timer);
        res.off('close', onClose);
      });
  }
}

function describe(err: unknown): { type: string; message: string } {
  return err instanceof Error ? { type: err.name, message: err.message } : { type: typeof err, message: 'non-error thrown' };
}
