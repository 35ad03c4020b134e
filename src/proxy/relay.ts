import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { scrubResponseHeaders } from '../http/headers.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { Framing } from '../policy/endpoints.js';
import type { RequestUsage } from '../usage/usage-observer.js';
import type { UpstreamResponse } from './forwarder.js';
import { completeBody, createSseObserver, isEventStream, type InspectedResponse } from './rewrite-response.js';
import { createEventGate, finalEvent } from './sse-framing.js';

export interface RelayContext {
  res: ServerResponse;
  /** Ends an SSE stream with a final error event in the route's framing (drain, idle, reset). */
  endWithError(code: number, message: string): void;
}

export interface RelayOptions {
  upstream: UpstreamResponse;
  res: ServerResponse;
  /** The gateway's own headers (X-Request-Id, CORS, Connection while draining): added to Coze's. */
  ownHeaders: OutgoingHttpHeaders;
  route: string;
  /** The endpoint's SSE framing (endpoints.ts), for the gateway's own final event; chat when unset. */
  framing: Framing | undefined;
  inspected: InspectedResponse;
  metrics: GatewayMetrics;
  streams: Set<RelayContext>;
  idleTimeoutMs: number;
  requestStarted: number;
  onBytes(n: number): void;
  /** Reads the usage Coze reports as the bytes pass (issue 18); ended by the caller. */
  usage?: RequestUsage | undefined;
}

/** Codes of the final events the gateway itself writes into a stream (docs/errors.md). */
export const STREAM_IDLE_CODE = 504002;
export const STREAM_RESET_CODE = 502002;

/**
 * Relays the upstream answer: status and headers (minus Set-Cookie and hop-by-hop), then the
 * body byte for byte. SSE is flushed per chunk and never re-framed; the only bytes the gateway
 * ever adds to a stream are a final error event when the stream cannot end normally.
 * True while a body is still being relayed: the relay's idle timer then decides when a quiet
 * stream ends, not the client socket's inactivity timeout (proxy-handler.ts watchTheWait).
 */
export function relayResponse(options: RelayOptions): boolean {
  const { upstream, res, inspected, metrics } = options;
  // The client left before the relay began (its 'close' has been and gone): nothing to relay
  // to, and a body piped into a destroyed response would pause for good, holding its connection.
  if (res.destroyed) {
    upstream.cancel();
    return false;
  }
  const sse = isEventStream(upstream);
  const headers: OutgoingHttpHeaders = scrubResponseHeaders(upstream.headers, options.ownHeaders);
  if (sse) {
    // Tell any buffering hop in front of us (nginx, ingress) to pass events through at once.
    headers['x-accel-buffering'] = 'no';
    headers['cache-control'] ??= 'no-cache';
  }
  const { usage } = options;
  if (inspected.complete) {
    const bytes = completeBody(inspected);
    // The body may have been filtered (response-filter.ts): its own length, never Coze's.
    headers['content-length'] = String(bytes.length);
    res.writeHead(upstream.statusCode, headers);
    options.onBytes(bytes.length);
    res.end(bytes);
    usage?.onBody(bytes, true);
    return false;
  }
  res.writeHead(upstream.statusCode, headers);
  // Asked for only here: an answer read whole needs no stream (forwarder.ts Answer).
  const body = upstream.body;

  const workflowFraming = options.framing === 'workflow';
  const observer = sse ? createSseObserver((code) => metrics.countCozeCode(code), usage?.sse) : undefined;
  const bodyUsage = sse ? undefined : usage;
  const gate = sse ? createEventGate() : undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  let firstByte = true;
  let relaying = true;
  const context: RelayContext = {
    res,
    endWithError(code, message) {
      if (res.writableEnded || res.destroyed || !gate) return;
      relaying = false;
      body.unpipe(res);
      // End the client's stream first: destroying the upstream then reads as our own doing. An
      // event Coze had not finished is dropped (sse-framing.ts), so the final one parses.
      res.end(finalEvent({ workflowFraming, lastId: observer?.lastId, gate, code, message }));
      body.destroy();
    },
  };

  if (sse) {
    res.flushHeaders();
    metrics.activeStreams.inc();
    options.streams.add(context);
  }

  idleTimer = setTimeout(() => {
    metrics.upstreamErrors.labels('idle_timeout').inc();
    if (sse) context.endWithError(STREAM_IDLE_CODE, 'The Coze stream went quiet for too long and was ended by the gateway.');
    else res.destroy();
  }, options.idleTimeoutMs);

  for (const chunk of inspected.prefix) {
    options.onBytes(chunk.length);
    res.write(chunk);
    bodyUsage?.onBody(chunk, false);
  }
  body.on('data', (chunk: Buffer) => {
    idleTimer?.refresh();
    options.onBytes(chunk.length);
    if (sse && firstByte) {
      firstByte = false;
      metrics.upstreamFirstByte.labels(options.route).observe((performance.now() - options.requestStarted) / 1000);
    }
  });
  const onUpstreamCut = () => {
    if (res.writableEnded) return;
    metrics.upstreamErrors.labels('reset').inc();
    if (sse) context.endWithError(STREAM_RESET_CODE, 'The Coze stream was cut before it ended.');
    else res.destroy();
  };
  // A cut upstream errors the body (the forwarder's contract).
  body.on('error', onUpstreamCut);
  if (gate && observer) relayEvents(body, res, gate, observer, () => relaying);
  else body.pipe(res);
  // Added after pipe's own listener, so each chunk is written before its usage is looked for.
  if (bodyUsage) body.on('data', (chunk: Buffer) => bodyUsage.onBody(chunk, false));

  res.on('close', () => {
    clearTimeout(idleTimer);
    idleTimer = undefined;
    if (sse) {
      metrics.activeStreams.dec();
      options.streams.delete(context);
    }
    // The client left: stop Coze generating (and billing) for nobody (SPEC section 10).
    if (!res.writableFinished) body.destroy();
  });
  return true;
}

/**
 * An SSE body, complete events as they come: flushed per chunk, byte for byte, with
 * backpressure (a client that stops reading pauses Coze), never re-framed.
 */
function relayEvents(body: Readable, res: ServerResponse, gate: ReturnType<typeof createEventGate>, observer: { observe(chunk: Buffer): void }, relaying: () => boolean): void {
  const send = (bytes: Buffer) => {
    if (bytes.length === 0 || !relaying()) return;
    // Written first: what the observer reads (error codes, usage) never holds a byte back.
    const flowing = res.write(bytes);
    observer.observe(bytes);
    if (!flowing) {
      body.pause();
      res.once('drain', () => body.resume());
    }
  };
  body.on('data', (chunk: Buffer) => send(gate.pass(chunk)));
  body.on('end', () => {
    if (!relaying()) return;
    send(gate.rest());
    res.end();
  });
}
