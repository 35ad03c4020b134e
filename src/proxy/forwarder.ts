import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';

/** How an upstream attempt failed; one mapping from transport codes, here and nowhere else. */
export const UPSTREAM_FAILURES = ['connect', 'reset', 'timeout', 'aborted'] as const;
export type UpstreamFailure = (typeof UPSTREAM_FAILURES)[number];

export class UpstreamError extends Error {
  /**
   * The attempt failed on a kept-alive connection that had already carried an earlier answer,
   * before a single byte of this one came back: the race where Coze closes an idle connection
   * just as it is reused, the one failure after which sending the request again is safe.
   */
  readonly staleConnection: boolean;

  constructor(
    readonly failure: UpstreamFailure,
    /** The transport's own code (ECONNREFUSED, UND_ERR_SOCKET...), for the error detail. */
    readonly code: string | undefined,
    options?: { cause?: unknown; staleConnection?: boolean },
  ) {
    super(`upstream ${failure}${code ? ` (${code})` : ''}`, options);
    this.name = 'UpstreamError';
    this.staleConnection = options?.staleConnection ?? false;
  }
}

export interface UpstreamRequest {
  readonly method: string;
  /** path?query, already rewritten by the policy; always sent to coze.baseUrl's host. */
  readonly path: string;
  /** Scrubbed, with Coze's Authorization set: forwarded as they are. */
  readonly headers: OutgoingHttpHeaders;
  /** A Buffer is sent whole (and can be sent again); a Readable is streamed, never buffered. */
  readonly body: Buffer | Readable | null;
}

export interface UpstreamResponse {
  readonly statusCode: number;
  /** Lower-cased names, as node:http gives them. */
  readonly headers: IncomingHttpHeaders;
  /** Flows with backpressure; destroy() aborts the upstream request (Coze stops generating). */
  readonly body: Readable;
}

export interface UpstreamCall {
  /** Gives up on the attempt: before the answer `done` gets `reason`; after it the body is cut. */
  abort(reason: Error): void;
}

export interface Forwarder {
  /** `done` runs exactly once, and never before send() has returned. */
  send(request: UpstreamRequest, done: (err: Error | null, res?: UpstreamResponse) => void): UpstreamCall;
  close(): Promise<void>;
}

export interface ForwarderOptions {
  /** coze.baseUrl: the only origin this gateway ever connects to for HTTP. */
  target: string;
  /** Upstream connections kept open at most (the keep-alive pool). */
  connections?: number;
}

/**
 * undici's Pool, driven through `dispatch` with one handler object per attempt: it measured
 * 0.6x the CPU per request of http-proxy driven the way a gateway must (docs/architecture.md).
 * One origin, HTTP/1.1 keep-alive, no pipelining (a request is never replayed by undici itself).
 */
export function createForwarder(options: ForwarderOptions): Forwarder {
  const connections = trackConnections();
  const pool = new Pool(new URL(options.target).origin, {
    connections: options.connections ?? 512,
    pipelining: 1,
    // The handler owns the time-to-headers deadline, and the body's idle timer belongs to the
    // inspection of a small answer (rewrite-response.ts) and then to the relay: undici's own
    // 300 s defaults would cut a quiet SSE stream behind their backs.
    headersTimeout: 0,
    bodyTimeout: 0,
    // Idle connections stay open a minute unless Coze's Keep-Alive hint says less (undici
    // follows it): closing them after undici's default 4 s meant a new TLS handshake to Coze
    // for every request after a pause, and a connection storm for every burst. A socket Coze
    // closes as we reuse it fails as a reset, which the handler retries once.
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 60_000,
  });
  return {
    send(request, done) {
      const call = new Attempt(done, connections);
      // The upload's own failure (a byte bound, the client leaving) is the attempt's outcome,
      // not whatever undici makes of it.
      if (request.body instanceof Readable) request.body.once('error', (err) => call.abort(err));
      pool.dispatch(
        { method: request.method as Dispatcher.HttpMethod, path: request.path, headers: request.headers as Record<string, string | string[]>, body: request.body },
        call,
      );
      call.dispatched();
      return call;
    },
    close: async () => {
      connections.stop();
      await pool.destroy();
    },
  };
}

/**
 * Which connection each attempt is written to, and how many requests that connection carried
 * before it. undici tells a handler nothing about its socket, but it publishes each request's
 * socket on the `undici:client:sendHeaders` diagnostics channel (documented, with the socket)
 * synchronously right after it calls the handler's onRequestStart for that request, in the same
 * call: the attempt that has just started is the one being written. Should a future undici
 * break that order, no attempt learns it reused a connection, and a reset is simply not retried:
 * the failure is on the side that never sends a request twice.
 */
interface ConnectionTracker {
  /** onRequestStart: `attempt` is about to be written to a connection. */
  starting(attempt: Attempt): void;
  stop(): void;
}

function trackConnections(): ConnectionTracker {
  // Requests written per connection, kept no longer than the socket itself.
  const written = new WeakMap<object, number>();
  let pending: Attempt | undefined;
  const onSendHeaders = (message: unknown) => {
    const attempt = pending;
    pending = undefined;
    // Another undici in the process (global fetch) publishes here too, never right after ours.
    const socket = (message as { socket?: object }).socket;
    if (!attempt || !socket) return;
    const before = written.get(socket) ?? 0;
    written.set(socket, before + 1);
    attempt.reusedConnection = before > 0;
  };
  diagnosticsChannel.subscribe('undici:client:sendHeaders', onSendHeaders);
  return {
    starting(attempt) {
      pending = attempt;
    },
    stop() {
      diagnosticsChannel.unsubscribe('undici:client:sendHeaders', onSendHeaders);
    },
  };
}

/** One upstream attempt: undici's handler, the caller's handle and the response body's source. */
class Attempt implements Dispatcher.DispatchHandler, UpstreamCall {
  /** Written to a connection that had carried a request (and so its answer) before. */
  reusedConnection = false;
  private controller: Dispatcher.DispatchController | undefined;
  private body: ResponseBody | undefined;
  private settled = false;
  private inDispatch = true;
  private abortReason: Error | undefined;
  /** Some byte of the answer arrived (undici's parser began a message). */
  private answerStarted = false;

  constructor(
    private readonly done: (err: Error | null, res?: UpstreamResponse) => void,
    private readonly connections: ConnectionTracker,
  ) {}

  /** dispatch() has returned: from now on `done` may run at once. */
  dispatched(): void {
    this.inDispatch = false;
  }

  abort(reason: Error): void {
    if (this.body) {
      this.body.destroy();
      return;
    }
    this.abortReason ??= reason;
    this.controller?.abort(reason);
    this.settle(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abortReason) controller.abort(this.abortReason);
    else this.connections.starting(this);
  }

  onResponseStarted(): void {
    this.answerStarted = true;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx informational answers are not the response.
    if (statusCode < 200 || this.settled) return;
    this.body = new ResponseBody(controller);
    this.settle(null, { statusCode, headers, body: this.body });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.body && !this.body.push(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.body?.finish();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.body) {
      this.body.fail(this.abortReason ?? toUpstreamError(err));
      return;
    }
    this.settle(this.abortReason ?? toUpstreamError(err, { staleConnection: this.reusedConnection && !this.answerStarted }));
  }

  private settle(err: Error | null, res?: UpstreamResponse): void {
    if (this.settled) return;
    this.settled = true;
    // dispatch() reports its own synchronous failures before returning; the caller arms its
    // timers and listeners only after send() returns.
    if (this.inDispatch) process.nextTick(this.done, err, res);
    else this.done(err, res);
  }
}

/** The answer's bytes as a stream with backpressure; destroying it early aborts the request. */
class ResponseBody extends Readable {
  private ended = false;

  constructor(private readonly controller: Dispatcher.DispatchController) {
    super();
  }

  finish(): void {
    this.ended = true;
    this.push(null);
  }

  fail(err: Error): void {
    this.ended = true;
    this.destroy(err);
  }

  override _read(): void {
    this.controller.resume();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (!this.ended) {
      this.ended = true;
      this.controller.abort(err ?? new UpstreamError('aborted', undefined));
    }
    callback(err);
  }
}

const RESET_CODES: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
const TIMEOUT_CODES: ReadonlySet<string> = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const ABORT_CODES: ReadonlySet<string> = new Set(['UND_ERR_ABORTED', 'ABORT_ERR']);

/** Transport codes to the closed vocabulary; anything else failed to connect. */
export function toUpstreamError(err: Error, context: { staleConnection?: boolean } = {}): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const failure: UpstreamFailure =
    code === undefined ? 'connect' : RESET_CODES.has(code) ? 'reset' : TIMEOUT_CODES.has(code) ? 'timeout' : ABORT_CODES.has(code) ? 'aborted' : 'connect';
  return new UpstreamError(failure, code, { cause: err, staleConnection: failure === 'reset' && context.staleConnection === true });
}
