import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { GatewayError, toErrorResponse, type ErrorReason } from '../errors.js';

/**
 * Requests Node refuses before our handler runs (an unparsable request line, CR/LF in a header,
 * Content-Length with Transfer-Encoding, headers over the limit or too slow) and CONNECT, which
 * Node hands to a separate event and would otherwise answer by closing the socket. Each gets
 * the Coze envelope like every other gateway error, then the connection is closed: after a parse
 * error nothing else on that socket can be trusted.
 */
export function answerClientErrors(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Bytes after a request that said Connection: close: that request is still being answered,
    // and the socket closes after it. Dropping the extra bytes loses nothing the client may expect.
    if (err.code === 'HPE_CLOSED_CONNECTION' && (socket as Duplex & { _httpMessage?: unknown })._httpMessage) return;
    writeRawError(socket, new GatewayError(reasonFor(err.code)));
  });
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    writeRawError(socket, new GatewayError('absolute-uri', { detail: 'CONNECT is not supported.' }));
  });
}

function reasonFor(code: string | undefined): ErrorReason {
  if (code === 'HPE_HEADER_OVERFLOW') return 'headers-too-large';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'request-timeout';
  return 'bad-request';
}

function writeRawError(socket: Duplex, err: GatewayError): void {
  // A response already in progress on this socket (a pipelined request) must not be corrupted.
  const inProgress = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
  if (!socket.writable || inProgress) {
    socket.destroy();
    return;
  }
  const response = toErrorResponse(err, randomUUID());
  const head = [`HTTP/1.1 ${response.status} ${STATUS_TEXT[response.status] ?? 'Error'}`, ...Object.entries(response.headers).map(([k, v]) => `${k}: ${v}`), 'connection: close'];
  socket.end(`${head.join('\r\n')}\r\n\r\n${response.body}`);
  socket.once('finish', () => socket.destroy());
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };
