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

/** Answers an upgrade with a plain HTTP response and closes the connection. */
export function answerUpgrade(socket: Duplex, status: number, headers: Record<string, string>, body: Buffer): void {
  const head = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`];
  for (const [name, value] of Object.entries({ ...headers, 'content-length': String(body.length), connection: 'close' })) head.push(`${name}: ${value}`);
  socket.end(Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`), body]));
}
