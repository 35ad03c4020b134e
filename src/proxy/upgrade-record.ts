import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log/logger.js';
import type { RequestLogFields } from '../log/request-log.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { AdmissionTrace } from './admit.js';

/** How a relayed socket ended, for the upgrade's log line. */
export interface SocketEnd {
  closeCode: number;
  closedBy: 'client' | 'coze';
  /** Payload bytes of the frames relayed from the client to Coze. */
  bytesIn: number;
  /** Payload bytes of the frames relayed from Coze to the client. */
  bytesOut: number;
  tokens: RequestLogFields['tokens'];
}

/** The fields of an upgrade's line: a request's, plus what only a socket has. */
type UpgradeLogFields = RequestLogFields & {
  upgrade: true;
  /** From the upgrade request to the 101 (the duration the metrics observe); on a 101 only. */
  handshakeMs?: number | undefined;
  closeCode?: number | undefined;
  closedBy?: SocketEnd['closedBy'] | undefined;
};

export interface UpgradeRecord {
  /** Coze's X-Tt-Logid of the dial, once known. */
  cozeLogId: string | undefined;
  /**
   * The upgrade was answered with `status` (a refusal, or 499 for a client gone before its
   * answer): counted and logged now. Only an upgrade's first answer counts.
   */
  refused(status: number): void;
  /** The client was accepted: the 101 is counted now; its line waits for the socket's close. */
  accepted(): void;
  /** The relayed socket closed: the upgrade's line. */
  closed(end: SocketEnd): void;
}

/**
 * Every upgrade is one request in the metrics and one line in the log, with the fields of an
 * HTTP request's (SPEC section 7), whatever became of it. The metrics take it when it is
 * answered, and observe the handshake (request to answer), not the socket's life: hours-long
 * sockets would otherwise fill the top bucket of the request duration histogram and hide a slow
 * Coze handshake. An accepted upgrade's line is written when its socket closes, so it can give
 * the socket's bytes, close code and whole duration (request to close, as an SSE request's
 * duration runs to the stream's end).
 */
export function createUpgradeRecord(deps: { metrics: GatewayMetrics; logger: Logger; sessionHash(sessionName: string): string }, req: IncomingMessage, trace: AdmissionTrace, requestId: string): UpgradeRecord {
  const started = performance.now();
  let status: number | undefined;
  let handshakeMs = 0;

  function answer(code: number): boolean {
    if (status !== undefined) return false;
    status = code;
    handshakeMs = performance.now() - started;
    deps.metrics.recordRequest(trace.route, deps.metrics.methodLabel(req.method), code, handshakeMs / 1000);
    return true;
  }

  function log(durationMs: number, end: SocketEnd | undefined, extra: Partial<UpgradeLogFields> = {}): void {
    // No query string, no header, no raw session_name; the fields in the order of an HTTP line.
    const line: UpgradeLogFields = {
      requestId,
      method: req.method,
      route: trace.route,
      path: trace.path,
      status: status ?? 0,
      durationMs: Math.round(durationMs),
      source: trace.source,
      session: trace.sessionName ? deps.sessionHash(trace.sessionName) : undefined,
      cozeLogId: record.cozeLogId,
      bytesIn: end?.bytesIn ?? 0,
      bytesOut: end?.bytesOut ?? 0,
      tokens: end?.tokens,
      upgrade: true,
      ...extra,
    };
    deps.logger.info(line);
  }

  const record: UpgradeRecord = {
    cozeLogId: undefined,
    refused(code) {
      if (answer(code)) log(handshakeMs, undefined);
    },
    accepted() {
      answer(101);
    },
    closed(end) {
      log(performance.now() - started, end, { handshakeMs: Math.round(handshakeMs), closeCode: end.closeCode, closedBy: end.closedBy });
    },
  };
  return record;
}
