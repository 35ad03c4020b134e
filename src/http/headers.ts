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

/**
 * The request headers that reach Coze, and only these (issue 15, finding 7): what the official
 * SDKs send besides their credential (docs/sdk.md). The gateway sets the rest
 * itself: Authorization (the session's token), Host, X-Request-Id, Accept-Encoding (identity)
 * and Content-Length (of the body it sends). Anything else, such as X-HTTP-Method-Override,
 * X-Original-URL, True-Client-IP or X-User-Id, stays with the gateway.
 */
export const FORWARDED_REQUEST_HEADERS = [
  'accept',
  'content-type',
  'user-agent',
  // JSON describing the SDK (all four official SDKs).
  'x-coze-client-user-agent',
  // coze-go with WithEnableLogID(true) sends its own log id for tracing; kept when it is a plain token.
  'x-tt-logid',
  // coze-js on knowledge document calls.
  'agw-js-conv',
] as const;

/**
 * Headers policy.forwardHeaders may never add: credentials, cookies, what the gateway sets,
 * hop-by-hop and framing, and what names a route, a method, a client address or a forwarding
 * hop (issue 15, finding 7).
 */
const NEVER_FORWARDED: readonly string[] = [
  ...HOP_BY_HOP,
  'authorization',
  'cookie',
  'x-api-key',
  'host',
  'x-request-id',
  'content-length',
  'content-encoding',
  'accept-encoding',
  'expect',
  'origin',
  'forwarded',
  'via',
  'x-real-ip',
  'true-client-ip',
  'x-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-cluster-client-ip',
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
];
const NEVER_FORWARDED_PREFIXES = ['proxy-', 'x-forwarded-', 'sec-websocket-', 'access-control-'];

/** Why `name` can never be forwarded, or undefined when policy.forwardHeaders may add it. */
export function forwardHeaderProblem(name: string, trustedHeaderName: string | undefined): string | undefined {
  const lower = name.toLowerCase();
  if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(lower)) return `"${name}" is not a header name`;
  if (lower === trustedHeaderName?.toLowerCase()) return `"${name}" is the trusted identity header`;
  if (NEVER_FORWARDED.includes(lower) || NEVER_FORWARDED_PREFIXES.some((p) => lower.startsWith(p))) return `"${name}" carries a credential, a route, a client address or framing, and is never forwarded`;
  return undefined;
}

/** A client-sent X-Tt-Logid goes on only as a plain token (Coze's own are 20 to 64 alphanumerics). */
const LOG_ID = /^[A-Za-z0-9]{1,64}$/;

/**
 * The headers that may go to Coze, by allowlist: a new object, so the caller's never leak
 * through a shared reference. A header the caller's Connection names is hop-by-hop (RFC 9110
 * 7.6.1): meant for the gateway alone, it never goes, allowlisted or not. Content-Length of a
 * streamed body is kept (the gateway sets it for a body it read); Node re-frames the body, so
 * Transfer-Encoding never goes.
 */
export function scrubRequestHeaders(headers: IncomingHttpHeaders, options: { forward?: readonly string[] } = {}): OutgoingHttpHeaders {
  const listed = connectionNamed(headers);
  const out: OutgoingHttpHeaders = {};
  copyAllowed(headers, FORWARDED_REQUEST_HEADERS, out, listed);
  if (options.forward) copyAllowed(headers, options.forward, out, listed);
  if (headers['content-length'] !== undefined && headers['transfer-encoding'] === undefined) out['content-length'] = headers['content-length'];
  return out;
}

function copyAllowed(headers: IncomingHttpHeaders, names: readonly string[], out: OutgoingHttpHeaders, listed: ReadonlySet<string> | undefined): void {
  for (const name of names) {
    const value = headers[name];
    if (value === undefined || listed?.has(name)) continue;
    if (name === 'x-tt-logid' && (typeof value !== 'string' || !LOG_ID.test(value))) continue;
    out[name] = value;
  }
}

/** A Connection header naming no other header: what nearly every request and answer carries. */
const PLAIN_CONNECTION = /^\s*(?:keep-alive|close)\s*$/i;

/**
 * The header names a Connection header lists; undefined when it lists none (absent, or only
 * keep-alive or close), so the common message makes no set.
 */
function connectionNamed(headers: IncomingHttpHeaders): ReadonlySet<string> | undefined {
  const connection = headers.connection;
  if (connection === undefined || (typeof connection === 'string' && PLAIN_CONNECTION.test(connection))) return undefined;
  const listed = new Set<string>();
  for (const value of Array.isArray(connection) ? connection : [connection]) {
    for (const token of value.split(',')) listed.add(token.trim().toLowerCase());
  }
  return listed;
}

/**
 * Coze's response headers that never reach the caller: cookies (nothing of Coze's session
 * belongs to the caller), every CORS header (the gateway alone decides CORS: cors.ts), and what
 * would let Coze set policy for the gateway's own origin (HSTS, Alt-Svc, Clear-Site-Data,
 * reporting endpoints), besides hop-by-hop headers and the gateway's own X-Request-Id.
 */
const DROPPED_RESPONSE_HEADERS: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP,
  'set-cookie',
  'set-cookie2',
  'x-request-id',
  'strict-transport-security',
  'alt-svc',
  'clear-site-data',
  'public-key-pins',
  'public-key-pins-report-only',
  'report-to',
  'reporting-endpoints',
  'nel',
  'timing-allow-origin',
]);

/**
 * Coze's answer minus the headers above and any header named in its Connection, added to `own`
 * (the gateway's own headers, which win over Coze's of the same name; a Vary lists both).
 */
export function scrubResponseHeaders(headers: IncomingHttpHeaders, own: OutgoingHttpHeaders = {}): OutgoingHttpHeaders {
  // The names Coze's Connection header lists, when it lists any.
  const listed = connectionNamed(headers);
  // Copied name by name: V8 turns an object made by spreading (`{ ...own }`) into a slow
  // dictionary as soon as a property is added to it, 8 µs here (bench/README.md).
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(own)) out[name] = own[name];
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name) || listed?.has(name) || name.startsWith('access-control-')) continue;
    if (own[name] !== undefined) {
      // CORS adds `Vary: Origin`; Coze's own Vary still holds for the answer.
      if (name === 'vary') out.vary = `${String(own.vary)}, ${String(value)}`;
      continue;
    }
    out[name] = value;
  }
  return out;
}
