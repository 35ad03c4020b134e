import { GatewayError } from '../errors.js';

const MAX_PATH_LENGTH = 2048;

/**
 * Decides on the raw request target, before routing and before authentication. The path is
 * never decoded: what is checked is exactly what is forwarded. Proxies pass `..` and `%2e%2e`
 * through (http-proxy also turns `\` into `/` and collapses `//`: SPEC section 10; undici sends
 * the path as given), so every one of those tricks is refused here instead.
 */
export function guardRequestTarget(method: string, rawUrl: string): { path: string; query: string } {
  if (method === 'CONNECT' || !rawUrl.startsWith('/')) {
    // Absolute-form (http://host/...), authority-form (CONNECT) and asterisk-form (OPTIONS *).
    throw new GatewayError(rawUrl === '*' ? 'bad-request' : 'absolute-uri');
  }
  const q = rawUrl.indexOf('?');
  const path = q === -1 ? rawUrl : rawUrl.slice(0, q);
  const query = q === -1 ? '' : rawUrl.slice(q + 1);
  if (path.length > MAX_PATH_LENGTH) throw new GatewayError('bad-path', { detail: 'The path is too long.' });
  if (!/^[A-Za-z0-9\-._~!$&'()*+,=:@/%]*$/.test(path)) throw new GatewayError('bad-path');
  if (path.includes(';')) throw new GatewayError('bad-path');
  // Every escape must be well-formed, and none may encode a separator, a dot, a backslash, a
  // NUL, or a percent sign (double encoding).
  if (path.includes('%')) for (const match of path.matchAll(/%(..)?/g)) {
    const hex = match[1];
    if (!hex || !/^[0-9A-Fa-f]{2}$/.test(hex)) throw new GatewayError('bad-path');
    if (['2e', '2f', '5c', '00', '25'].includes(hex.toLowerCase()) || parseInt(hex, 16) < 0x20) throw new GatewayError('bad-path');
  }
  const segments = path.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] as string;
    const last = i === segments.length - 1;
    if (segment === '' && !(last && segments.length === 1)) throw new GatewayError('bad-path');
    if (segment === '.' || segment === '..' || segment.endsWith('.')) throw new GatewayError('bad-path');
  }
  if (/[^\x21-\x7e]/.test(query)) throw new GatewayError('bad-request', { detail: 'The query string holds raw control or non-ASCII characters.' });
  return { path, query };
}

/** A refused target is logged this long at most: enough to see the trick, too short to flood. */
const MAX_LOGGED_TARGET = 256;

/**
 * The request target as the log shows a request refused before its path was accepted (a path
 * trick, an absolute URI, a preflight, a route the gateway does not serve): never the query or
 * a fragment, which may hold credentials (`?authorization=` on upgrades), nor the userinfo of
 * an absolute or scheme-relative URI (`http://user:password@host/`), and cut at MAX_LOGGED_TARGET characters. The
 * request log escapes what is left as JSON. Called on refusals only, never on a forwarded request.
 */
export function targetForLog(rawUrl: string): string {
  // Userinfo goes first, everything up to the last @: a password may hold a /, ? or # that would
  // end the authority, or the path, early (an @ in the query then costs the logged path, never more).
  const userinfo = /^((?:[A-Za-z][A-Za-z0-9+.-]*:)?\/\/).*@/.exec(rawUrl);
  let target = userinfo ? `${userinfo[1] as string}${rawUrl.slice(userinfo[0].length)}` : rawUrl;
  const end = target.search(/[?#]/);
  if (end !== -1) target = target.slice(0, end);
  if (target === '') return '-';
  return target.length > MAX_LOGGED_TARGET ? `${target.slice(0, MAX_LOGGED_TARGET)}…` : target;
}
