import type { IncomingHttpHeaders } from 'node:http';

const ALLOWED_METHODS = 'GET, POST, PUT, DELETE, PATCH';
const EXPOSED = 'x-request-id, x-tt-logid, x-gateway-error, retry-after';

/**
 * CORS for browsers calling the gateway directly (every route carries credentials, so origins
 * are listed, never `*`). Preflights are answered before authentication (SPEC section 1).
 */
export function createCors(allowedOrigins: readonly string[] | undefined) {
  const origins = new Set(allowedOrigins ?? []);
  const allowed = (origin: string | undefined): origin is string => origin !== undefined && origins.has(origin);

  return {
    preflight(headers: IncomingHttpHeaders): { status: number; headers: Record<string, string> } | undefined {
      const origin = headers.origin;
      const method = headers['access-control-request-method'];
      if (origin === undefined || method === undefined) return undefined;
      if (!allowed(origin)) return { status: 403, headers: { vary: 'Origin' } };
      const requested = String(headers['access-control-request-headers'] ?? '')
        .split(',')
        .map((h) => h.trim())
        .filter((h) => /^[A-Za-z0-9-]+$/.test(h));
      return {
        status: 204,
        headers: {
          'access-control-allow-origin': origin,
          'access-control-allow-methods': ALLOWED_METHODS,
          ...(requested.length ? { 'access-control-allow-headers': requested.join(', ') } : {}),
          'access-control-allow-credentials': 'true',
          'access-control-max-age': '600',
          vary: 'Origin',
        },
      };
    },
    responseHeaders(origin: string | undefined): Record<string, string> {
      if (!allowed(origin)) return {};
      return {
        'access-control-allow-origin': origin,
        'access-control-allow-credentials': 'true',
        'access-control-expose-headers': EXPOSED,
        vary: 'Origin',
      };
    },
  };
}
