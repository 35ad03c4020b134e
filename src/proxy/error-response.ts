import type { IncomingMessage, ServerResponse } from 'node:http';
import { toErrorResponse } from '../errors.js';
import { hasBody } from './request-body.js';

/**
 * Writes a gateway error in the Coze envelope. Once headers have gone out nothing else may be
 * written, so the connection is cut instead (the client sees a truncated answer, never a
 * second status line). When a declared request body was not read to its end (a 413, a refusal
 * before the body), the connection closes after the answer rather than reading an upload
 * nobody wants. A request with no body keeps its keep-alive connection: `req.complete` alone
 * cannot tell, since Node sets it only after the request event, where most refusals are made.
 */
export function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, requestId: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const response = toErrorResponse(err, requestId);
  if (!req.complete && hasBody(req)) response.headers.connection = 'close';
  res.writeHead(response.status, response.headers).end(response.body);
}
