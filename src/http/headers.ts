import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

export const HOP_BY_HOP: readonly string[] = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

/** The caller's own credentials and anything a client could use to spoof where it came from. */
const CALLER_ONLY = ['authorization', 'cookie', 'x-api-key', 'forwarded', 'x-real-ip', 'host', 'x-request-id', 'expect', 'content-length'];

function named(headers: IncomingHttpHeaders): Set<string> {
  const listed = new Set<string>();
  const connection = headers.connection;
  for (const value of Array.isArray(connection) ? connection : connection ? [connection] : []) {
    for (const token of value.split(',')) listed.add(token.trim().toLowerCase());
  }
  return listed;
}

/**
 * The headers that may go to Coze: a new object, so the caller's never leak through a shared
 * reference. Content-Length is set again by the gateway from the body it actually sends; Node
 * re-frames the body, so Transfer-Encoding goes too.
 */
export function scrubRequestHeaders(headers: IncomingHttpHeaders, options: { dropAlso: readonly string[]; keepUpgrade?: boolean }): OutgoingHttpHeaders {
  const drop = new Set([...HOP_BY_HOP, ...CALLER_ONLY, ...options.dropAlso.map((h) => h.toLowerCase()), ...named(headers)]);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || drop.has(name) || name.startsWith('proxy-') || name.startsWith('x-forwarded-')) continue;
    out[name] = value;
  }
  if (headers['content-length'] !== undefined && headers['transfer-encoding'] === undefined) out['content-length'] = headers['content-length'];
  return out;
}

/** Coze's answer minus Set-Cookie (nothing of Coze's session belongs to the caller) and hop-by-hop headers. */
export function scrubResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const drop = new Set([...HOP_BY_HOP, 'set-cookie', ...named(headers)]);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || drop.has(name)) continue;
    out[name] = value;
  }
  return out;
}
