import type { IncomingMessage, ServerResponse } from 'node:http';
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
 * A token reported bad is re-minted only once this replica has held it this long: the caller
 * holds the token it reports, so without a floor one signed-in user could make the gateway ask
 * Coze's token endpoint on every call, spending the app's rate for everyone.
 */
export const MIN_REPORTED_TOKEN_AGE_MS = 30_000;

/**
 * `POST /gateway/token`: hands the caller the Coze token of their own session, for the Web Chat
 * SDK's `auth.onRefreshToken` (https://www.coze.cn/open/docs/developer_guides/install_web_sdk). The session always comes from the
 * authenticated identity, never from the client. If the SDK reports the token it holds as bad
 * (`old_token` equal to the cached one, held for at least 30 s), a fresh one is minted. `tokenKey` names the vended
 * token, which may carry a narrower scope than proxied ones (mint-request.ts).
 */
export async function vendToken(req: IncomingMessage, res: ServerResponse, admission: Admission, tokens: TokenCache, tokenKey: string = admission.tokenKey): Promise<void> {
  const oldToken = await readOldToken(req);
  if (oldToken !== undefined && tokens.peek(tokenKey)?.accessToken === oldToken) {
    const heldForMs = tokens.heldForMs(tokenKey) ?? MIN_REPORTED_TOKEN_AGE_MS;
    if (heldForMs < MIN_REPORTED_TOKEN_AGE_MS) {
      throw new GatewayError('rate-limited', {
        headers: { 'retry-after': String(Math.ceil((MIN_REPORTED_TOKEN_AGE_MS - heldForMs) / 1000)) },
        detail: 'This token was issued moments ago; a new one can be asked for once it is 30 s old.',
      });
    }
    await tokens.invalidateIfSame(tokenKey, oldToken);
  }
  const token = await lookupToken(tokens, tokenKey);
  sendPrivateJson(res, {
    access_token: token.accessToken,
    expires_in: token.expiresAt,
    token_type: 'Bearer',
    session_name: admission.sessionName,
  });
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
