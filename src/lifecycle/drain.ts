import type { Server } from 'node:http';
import type { Gateway } from '../server.js';

/** Code of the final SSE event a stream gets when it outlives the drain window. */
export const DRAIN_STREAM_CODE = 503001;

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

/**
 * Graceful drain (SPEC section 1 and issue 5): readiness turns 503 at once, the listener closes
 * so new connections are refused, in-flight requests and streams run on for up to the grace
 * window, and whatever is still open then ends cleanly: SSE with a final error event in Coze's
 * framing, everything else by closing the connection.
 */
export async function drain(gateway: Gateway, server: Server, inflight: InflightTracker, graceMs: number): Promise<'drained' | 'deadline'> {
  gateway.startDrain();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), graceMs);
  });
  const outcome = await Promise.race([inflight.idle().then(() => 'drained' as const), deadline]);
  clearTimeout(timer);
  if (outcome === 'deadline') {
    for (const stream of [...gateway.streams]) {
      stream.endWithError(DRAIN_STREAM_CODE, 'The gateway is shutting down. Retry on another replica.');
    }
    await gateway.closeWebSockets();
    server.closeAllConnections();
  }
  await closed;
  return outcome;
}
