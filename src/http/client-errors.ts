import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { GatewayError, toErrorResponse, type ErrorReason } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { createRequestLog } from '../log/request-log.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { UNMATCHED_ROUTE } from '../policy/route-table.js';

/** Where a refusal is reported: the request log and http_requests_total, as every other request. */
export interface ClientErrorsDeps {
  logger: Logger;
  metrics: Pick<GatewayMetrics, 'recordRequest' | 'methodLabel'>;
}

/**
 * Requests Node refuses before our handler runs (an unparsable request line, CR/LF in a header,
 * Content-Length with Transfer-Encoding, headers over the limit or too slow) and CONNECT, which
 * Node hands to a separate event and would otherwise answer by closing the socket. Each gets
 * the Coze envelope like every other gateway error, then the connection is closed: after a parse
 * error nothing else on that socket can be trusted. Each answer is logged and counted like any
 * request, so the logid the client got leads to a line. Neither the method nor the path of a
 * request Node could not parse is known for sure (Node hands over only the last bytes read,
 * which may be the middle of a header), so they are left out rather than guessed.
 */
export function answerClientErrors(server: Server, deps: ClientErrorsDeps): void {
  const requestLog = createRequestLog(deps.logger);
  const answer = (socket: Duplex, err: GatewayError, method: string | undefined): void => {
    const requestId = writeRawError(socket, err);
    if (requestId === undefined) return;
    deps.metrics.recordRequest(UNMATCHED_ROUTE, deps.metrics.methodLabel(method), err.status, 0);
    requestLog({ requestId, method, route: UNMATCHED_ROUTE, path: '-', status: err.status, durationMs: 0, source: undefined, session: undefined, cozeLogId: undefined, bytesIn: 0, bytesOut: 0, error: err.reason });
  };
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Bytes after a request that said Connection: close: that request is still being answered,
    // and the socket closes after it. Dropping the extra bytes loses nothing the client may expect.
    if (err.code === 'HPE_CLOSED_CONNECTION' && (socket as Duplex & { _httpMessage?: unknown })._httpMessage) return;
    // A connection that never sent a byte made no request: a browser's preconnect or a balancer's
    // spare connection. It is closed without an answer, a log line or a count, as nginx does;
    // counted, every one would read as a slow client on the error-rate dashboards.
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && (socket as Socket).bytesRead === 0) {
      socket.destroy();
      return;
    }
    answer(socket, new GatewayError(reasonFor(err.code)), undefined);
  });
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    answer(socket, new GatewayError('absolute-uri', { detail: 'CONNECT is not supported.' }), req.method);
  });
}

function reasonFor(code: string | undefined): ErrorReason {
  if (code === 'HPE_HEADER_OVERFLOW') return 'headers-too-large';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'request-timeout';
  return 'bad-request';
}

/** The request id of the answer written, or undefined when the socket could only be cut. */
function writeRawError(socket: Duplex, err: GatewayError): string | undefined {
  // A response already in progress on this socket (a pipelined request) must not be corrupted.
  const inProgress = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
  if (!socket.writable || inProgress) {
    socket.destroy();
    return undefined;
  }
  const requestId = randomUUID();
  const response = toErrorResponse(err, requestId);
  const head = [`HTTP/1.1 ${response.status} ${STATUS_TEXT[response.status] ?? 'Error'}`, ...Object.entries(response.headers).map(([k, v]) => `${k}: ${v}`), 'connection: close'];
  socket.end(`${head.join('\r\n')}\r\n\r\n${response.body}`);
  socket.once('finish', () => socket.destroy());
  return requestId;
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };
