import type { IncomingMessage, ServerResponse } from 'node:http';
import { toErrorResponse } from '../errors.js';

/**
 * Writes a gateway error in the Coze envelope. Once headers have gone out nothing else may be
 * written, so the connection is cut instead (the client sees a truncated answer, never a
 * second status line). When the request body was not read to its end (a 413, a refusal before
 * the body), the connection closes after the answer: otherwise the unread bytes would be taken
 * for the next request on that keep-alive socket.
 */
export function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, requestId: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const response = toErrorResponse(err, requestId);
  if (!req.complete) response.headers.connection = 'close';
  res.writeHead(response.status, response.headers).end(response.body);
}
