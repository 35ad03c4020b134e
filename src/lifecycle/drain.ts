import type { Server } from 'node:http';
import type { RelayContext } from '../proxy/relay.js';

/** Code of the final SSE event a stream gets when it outlives the drain window. */
export const DRAIN_STREAM_CODE = 503001;
/** What a WebSocket is told at the start of the drain's last phase: going away (RFC 6455). */
export const DRAIN_WEBSOCKET_CODE = 1001;
/** The end of the window kept for closing: at most this long, and at most a quarter of it. */
export const DRAIN_CLOSE_BUDGET_MS = 2000;

export interface InflightTracker {
  readonly count: number;
  idle(): Promise<void>;
}

/** Counts requests from arrival to the end of their response, so a drain knows when it is done. */
export function trackInflight(server: Server): InflightTracker {
  let count = 0;
  let waiters: Array<() => void> = [];
  server.on('request', (_req, res) => {
    count += 1;
    res.once('close', () => {
      count -= 1;
      if (count === 0) {
        for (const w of waiters) w();
        waiters = [];
      }
    });
  });
  return {
    get count() {
      return count;
    },
    idle: () => (count === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))),
  };
}

/** What a drain needs of the gateway. */
export interface DrainTarget {
  startDrain(): void;
  /** Open SSE responses. */
  streams: Set<RelayContext>;
  /** Relayed WebSockets: in-flight work like any request. */
  websockets: {
    closeAll(code: number, reason: string): number;
    terminateAll(): number;
    idle(): Promise<void>;
  };
}

export interface DrainReport {
  /** `drained`: everything finished by itself; `deadline`: the last phase had to end something. */
  outcome: 'drained' | 'deadline';
  /** SSE streams ended with the final error event. */
  streamsEnded: number;
  /** WebSockets sent a 1001 close frame. */
  websocketsClosed: number;
  /** Client sockets still open at the deadline (a peer that never answered the close), cut. */
  socketsCut: number;
}

/**
 * Graceful drain (SPEC section 1, issues 5 and 16). Readiness turns 503 at once and the listener
 * closes, so new connections are refused. In-flight requests, SSE streams and WebSockets run on.
 * The last phase starts DRAIN_CLOSE_BUDGET_MS (at most a quarter of the window) before the end:
 * streams still open get a final error event in Coze's framing and WebSockets a 1001 close
 * frame on both ends, so clients reconnect elsewhere. At the end of the window whatever is still
 * open, such as a client that never answers the close frame, is cut. So the drain always ends
 * within `graceMs`, whatever the clients do.
 */
export async function drain(target: DrainTarget, server: Server, inflight: InflightTracker, graceMs: number): Promise<DrainReport> {
  const started = Date.now();
  const remaining = () => Math.max(0, graceMs - (Date.now() - started));
  target.startDrain();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const report: DrainReport = { outcome: 'drained', streamsEnded: 0, websocketsClosed: 0, socketsCut: 0 };

  const idle = Promise.all([inflight.idle(), target.websockets.idle()]);
  if ((await within(idle, graceMs - Math.min(DRAIN_CLOSE_BUDGET_MS, graceMs / 4))) === 'timeout') {
    report.outcome = 'deadline';
    for (const stream of [...target.streams]) {
      stream.endWithError(DRAIN_STREAM_CODE, 'The gateway is shutting down. Retry on another replica.');
      report.streamsEnded += 1;
    }
    report.websocketsClosed = target.websockets.closeAll(DRAIN_WEBSOCKET_CODE, 'gateway shutting down');
  }
  // Keep-alive connections whose last response has ended are let go now, not at the deadline.
  server.closeIdleConnections();
  if ((await within(closed, remaining())) === 'timeout') {
    report.outcome = 'deadline';
    report.socketsCut = target.websockets.terminateAll();
    server.closeAllConnections();
    await closed;
  }
  return report;
}

async function within(promise: Promise<unknown>, ms: number): Promise<'done' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(0, ms));
  });
  try {
    return await Promise.race([promise.then(() => 'done' as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
