import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { toErrorResponse, GatewayError, type ErrorReason } from '../errors.js';

/**
 * Answers a refused WebSocket upgrade with a real HTTP response in the Coze envelope, rather
 * than dropping the socket, so clients can tell why (issue: a refused upgrade gets a status).
 */
export function rejectUpgrade(socket: Duplex, _req: IncomingMessage, reasonOrError: ErrorReason | unknown, requestId = randomUUID()): void {
  const err = typeof reasonOrError === 'string' ? new GatewayError(reasonOrError as ErrorReason) : reasonOrError;
  const response = toErrorResponse(err, requestId);
  answerUpgrade(socket, response.status, response.headers, Buffer.from(response.body));
}

/** How long a refused client may take to read the answer before its socket is cut anyway. */
const FLUSH_BACKSTOP_MS = 5_000;

/**
 * Answers an upgrade with a plain HTTP response and closes the connection. The gateway closes
 * it fully itself: the server's sockets are half-open capable and an upgrade's socket escapes
 * the server's timeouts, so after a mere end() a client that never closes its side would hold
 * the socket open for good (and a drain would wait for it).
 */
export function answerUpgrade(socket: Duplex, status: number, headers: Record<string, string>, body: Buffer): void {
  const head = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`];
  for (const [name, value] of Object.entries({ ...headers, 'content-length': String(body.length), connection: 'close' })) head.push(`${name}: ${value}`);
  // A client that does not read at all cannot keep the answer, and so the socket, pending either.
  const backstop = setTimeout(() => socket.destroy(), FLUSH_BACKSTOP_MS).unref();
  socket.once('close', () => clearTimeout(backstop));
  socket.once('finish', () => socket.destroy());
  socket.end(Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`), body]));
}
