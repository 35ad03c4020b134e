import type { IncomingMessage, ServerResponse } from 'node:http';
import { LRUCache } from 'lru-cache';
import { lookupToken } from '../coze/coze-errors.js';
import type { TokenCache } from '../coze/token-cache.js';
import { GatewayError } from '../errors.js';
import { parseJsonObject } from '../policy/json-body.js';
import type { Admission } from '../proxy/admit.js';
import { readJsonBody } from '../proxy/request-body.js';
import { sendPrivateJson } from '../http/private-json.js';

export const VENDING_PATH = '/gateway/token';
const MAX_VENDING_BODY_BYTES = 8 * 1024;
/**
 * A session's token is re-minted on a report (`old_token`) at most once in this long on each
 * replica: the caller holds the token it reports, so without a floor one signed-in user could
 * make every call an exchange at Coze's token endpoint, spending the app's rate for everyone.
 */
export const REPORTED_REMINT_INTERVAL_MS = 30_000;
const MAX_REMEMBERED_REMINTS = 10_000;

export type TokenVendor = (req: IncomingMessage, res: ServerResponse, admission: Admission, tokenKey?: string) => Promise<void>;

/**
 * `POST /gateway/token`: hands the caller the Coze token of their own session, for the Web Chat
 * SDK's `auth.onRefreshToken` (https://www.coze.cn/open/docs/developer_guides/install_web_sdk). The session always comes from the
 * authenticated identity, never from the client. If the SDK reports the token it holds as bad
 * (`old_token`), that token is dropped here and in Redis and a fresh one is minted, unless a
 * report re-minted this session's token moments ago (429 with Retry-After). `tokenKey` names the
 * vended token, which may carry a narrower scope than proxied ones (mint-request.ts).
 */
export function createTokenVendor(tokens: TokenCache, now: () => number = Date.now): TokenVendor {
  const reminted = new LRUCache<string, number>({ max: MAX_REMEMBERED_REMINTS });
  return async (req, res, admission, tokenKey = admission.tokenKey) => {
    const oldToken = await readOldToken(req);
    if (oldToken !== undefined) {
      const last = reminted.get(tokenKey);
      const sinceMs = last === undefined ? Infinity : now() - last;
      if (sinceMs < REPORTED_REMINT_INTERVAL_MS) {
        // A report of a token already replaced is served the current one; the same token again waits.
        if (tokens.peek(tokenKey)?.accessToken === oldToken) {
          throw new GatewayError('rate-limited', {
            headers: { 'retry-after': String(Math.ceil((REPORTED_REMINT_INTERVAL_MS - sinceMs) / 1000)) },
            detail: 'A new token was issued for this session moments ago; another can be asked for 30 s after it.',
          });
        }
      } else if (await tokens.invalidateIfSame(tokenKey, oldToken)) {
        reminted.set(tokenKey, now());
      }
    }
    const token = await lookupToken(tokens, tokenKey);
    sendPrivateJson(res, {
      access_token: token.accessToken,
      expires_in: token.expiresAt,
      token_type: 'Bearer',
      session_name: admission.sessionName,
    });
  };
}

async function readOldToken(req: IncomingMessage): Promise<string | undefined> {
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return undefined;
  // The last occurrence wins, as with any JSON decoder; a non-string one is refused below.
  const old = parseJsonObject(await readJsonBody(req, MAX_VENDING_BODY_BYTES)).get('old_token').at(-1);
  if (old === undefined || old.kind === 'null' || old.value === '') return undefined;
  if (old.kind !== 'string') throw new GatewayError('bad-json-body', { detail: 'old_token must be a string.' });
  return old.value as string;
}
