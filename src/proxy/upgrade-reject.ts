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
  const head = [`HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? 'Error'}`];
  for (const [name, value] of Object.entries({ ...response.headers, connection: 'close' })) head.push(`${name}: ${value}`);
  socket.end(`${head.join('\r\n')}\r\n\r\n${response.body}`);
}
