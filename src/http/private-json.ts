import type { ServerResponse } from 'node:http';

/**
 * A 200 JSON answer meant for its caller alone (a token, personal figures): no cache, shared or
 * private, may keep it.
 */
export function sendPrivateJson(res: ServerResponse, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    pragma: 'no-cache',
  });
  res.end(body);
}
