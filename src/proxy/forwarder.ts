import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';

/** How an upstream attempt failed; one mapping from transport codes, here and nowhere else. */
export const UPSTREAM_FAILURES = ['connect', 'reset', 'timeout', 'aborted'] as const;
export type UpstreamFailure = (typeof UPSTREAM_FAILURES)[number];

/**
 * The methods sent again after a reset on a reused connection: RFC 9110's idempotent ones, the
 * rule of Go's net/http (`shouldRetryRequest`). Any method is safe to resend when nothing of it
 * was written, and undici covers that case itself: before it writes to an idle kept-alive
 * socket it lets pending FIN and RST be read (client-h1.js, idle socket validation), and a
 * request not yet written to a socket that closed is sent on another one. What still fails
 * reached Coze's socket, and a POST is sent once. An `Idempotency-Key` header does not make a
 * POST resendable here, as it does in Go: Coze documents no such key, so it would not spare
 * the second run.
 */
const REPLAYABLE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

export class UpstreamError extends Error {
  /**
   * Sending the request again cannot make Coze act on it twice: the attempt failed on a
   * kept-alive connection that had already carried an earlier answer, before a single byte of
   * this one came back (the race where Coze closes an idle connection just as it is reused),
   * and its method is idempotent (REPLAYABLE_METHODS). A POST in the same place may have been
   * read whole and acted on (a chat run, and billed) before the connection dropped.
   */
  readonly resendable: boolean;

  constructor(
    readonly failure: UpstreamFailure,
    /** The transport's own code (ECONNREFUSED, UND_ERR_SOCKET...), for the error detail. */
    readonly code: string | undefined,
    options?: { cause?: unknown; resendable?: boolean },
  ) {
    super(`upstream ${failure}${code ? ` (${code})` : ''}`, options);
    this.name = 'UpstreamError';
    this.resendable = options?.resendable ?? false;
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
  /**
   * The body as a stream, made when first asked for: flows with backpressure, and destroy()
   * aborts the upstream request (Coze stops generating).
   */
  readonly body: Readable;
  /**
   * Reads the body whole when it ends within `limit` bytes, with no stream: `done` gets every
   * chunk and `complete`. Past the limit it stops reading and `done` gets the chunks so far
   * (complete false); `body` then streams the rest. For a reader that has not touched `body`;
   * `onChunk` runs per chunk. `done` runs once, also when the answer fails or is cancelled.
   */
  collect(limit: number, onChunk: () => void, done: (err: Error | null, chunks: Buffer[], complete: boolean) => void): void;
  /** Gives up on the answer: aborts the upstream request unless it ended, and fails a collect. */
  cancel(): void;
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
    // An idle connection is closed by whichever side times out first, and a request written
    // as Coze closes it fails after the write: a GET is sent again, a POST is a 502 (the
    // at-most-once rule above). So ours must time out first. Coze documents no idle timeout;
    // undici's default of 4 s sits below the shortest common ones (Node's and Apache's 5 s),
    // and a `Keep-Alive: timeout=N` hint from Coze replaces it with N - 2 s (undici's
    // keepAliveTimeoutThreshold), capped at a minute. The cost is a new TLS handshake for the
    // first request after a pause of 4 s on a connection; under load connections never idle that long.
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
  });
  return {
    send(request, done) {
      const call = new Attempt(request.method, done, connections);
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

/** One upstream attempt: undici's handler, the caller's handle and the answer's source. */
class Attempt implements Dispatcher.DispatchHandler, UpstreamCall {
  /** Written to a connection that had carried a request (and so its answer) before. */
  reusedConnection = false;
  private controller: Dispatcher.DispatchController | undefined;
  private answer: Answer | undefined;
  private settled = false;
  private inDispatch = true;
  private abortReason: Error | undefined;
  /** Some byte of the answer arrived (undici's parser began a message). */
  private answerStarted = false;

  constructor(
    private readonly method: string,
    private readonly done: (err: Error | null, res?: UpstreamResponse) => void,
    private readonly connections: ConnectionTracker,
  ) {}

  /** dispatch() has returned: from now on `done` may run at once. */
  dispatched(): void {
    this.inDispatch = false;
  }

  abort(reason: Error): void {
    if (this.answer) {
      this.answer.cancel();
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
    this.answer = new Answer(statusCode, headers, controller);
    this.settle(null, this.answer);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.answer && !this.answer.data(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.answer?.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.answer) {
      this.answer.fail(this.abortReason ?? toUpstreamError(err));
      return;
    }
    this.settle(this.abortReason ?? toUpstreamError(err, { resendable: this.reusedConnection && !this.answerStarted && REPLAYABLE_METHODS.has(this.method) }));
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

interface Collecting {
  limit: number;
  size: number;
  chunks: Buffer[];
  onChunk: () => void;
  done: (err: Error | null, chunks: Buffer[], complete: boolean) => void;
}

/**
 * Coze's answer. A small answer read whole (the inspection of every JSON answer) is gathered
 * from undici's callbacks into an array: a stream, with its events and ticks, was a measurable
 * share of a cached request (bench/README.md). Anything else gets a stream, made when the reader
 * asks for it or when a byte arrives with no reader yet.
 */
class Answer implements UpstreamResponse {
  private stream: ResponseBody | undefined;
  private collecting: Collecting | undefined;
  /** The body ended, or failed, before any stream was made. */
  private ended = false;
  private failure: Error | undefined;

  constructor(
    readonly statusCode: number,
    readonly headers: IncomingHttpHeaders,
    private readonly controller: Dispatcher.DispatchController,
  ) {}

  get body(): Readable {
    if (this.stream) return this.stream;
    const stream = new ResponseBody(this.controller);
    this.stream = stream;
    if (this.failure) stream.fail(this.failure);
    else if (this.ended) stream.finish();
    return stream;
  }

  collect(limit: number, onChunk: () => void, done: (err: Error | null, chunks: Buffer[], complete: boolean) => void): void {
    if (this.stream) throw new Error('collect() after the body stream was made');
    if (this.failure) done(this.failure, [], false);
    else if (this.ended) done(null, [], true);
    else this.collecting = { limit, size: 0, chunks: [], onChunk, done };
  }

  cancel(): void {
    if (this.stream) {
      this.stream.destroy();
      return;
    }
    if (this.ended || this.failure) return;
    const reason = new UpstreamError('aborted', undefined);
    this.fail(reason);
    this.controller.abort(reason);
  }

  /** A chunk from undici; false asks it to pause. */
  data(chunk: Buffer): boolean {
    const collecting = this.collecting;
    if (!collecting) return this.body.push(chunk);
    collecting.chunks.push(chunk);
    collecting.size += chunk.length;
    collecting.onChunk();
    if (collecting.size <= collecting.limit) return true;
    // Past the limit: the reader takes what came and streams the rest from `body`.
    this.collecting = undefined;
    collecting.done(null, collecting.chunks, false);
    return false;
  }

  end(): void {
    if (this.failure) return;
    this.ended = true;
    const collecting = this.collecting;
    this.collecting = undefined;
    if (collecting) collecting.done(null, collecting.chunks, true);
    else this.stream?.finish();
  }

  fail(err: Error): void {
    if (this.failure || this.ended) return;
    this.failure = err;
    const collecting = this.collecting;
    this.collecting = undefined;
    if (collecting) collecting.done(err, collecting.chunks, false);
    else this.stream?.fail(err);
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

/**
 * An answer that is already a stream (a WebSocket handshake's refusal) in the forwarder's shape,
 * so HTTP answers and upgrade refusals are inspected alike.
 */
export function answerFromStream(statusCode: number, headers: IncomingHttpHeaders, body: Readable): UpstreamResponse {
  return {
    statusCode,
    headers,
    body,
    cancel: () => body.destroy(),
    collect(limit, onChunk, done) {
      const chunks: Buffer[] = [];
      let size = 0;
      let finished = false;
      const finish = (err: Error | null, complete: boolean) => {
        if (finished) return;
        finished = true;
        body.off('data', onData);
        body.off('end', onEnd);
        body.off('error', onError);
        body.off('close', onClose);
        done(err, chunks, complete);
      };
      const onData = (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        onChunk();
        if (size > limit) {
          body.pause();
          finish(null, false);
        }
      };
      const onEnd = () => finish(null, true);
      const onError = (err: Error) => finish(err, false);
      // Destroyed without an error (the reader gave up): it fails all the same.
      const onClose = () => finish(new UpstreamError('aborted', undefined), false);
      body.on('data', onData);
      body.on('end', onEnd);
      body.on('error', onError);
      body.on('close', onClose);
    },
  };
}

const RESET_CODES: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
const TIMEOUT_CODES: ReadonlySet<string> = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const ABORT_CODES: ReadonlySet<string> = new Set(['UND_ERR_ABORTED', 'ABORT_ERR']);

/** Transport codes to the closed vocabulary; anything else failed to connect. */
export function toUpstreamError(err: Error, context: { resendable?: boolean } = {}): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const failure: UpstreamFailure =
    code === undefined ? 'connect' : RESET_CODES.has(code) ? 'reset' : TIMEOUT_CODES.has(code) ? 'timeout' : ABORT_CODES.has(code) ? 'aborted' : 'connect';
  return new UpstreamError(failure, code, { cause: err, resendable: failure === 'reset' && context.resendable === true });
}
