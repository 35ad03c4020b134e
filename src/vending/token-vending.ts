import type { IncomingMessage, ServerResponse } from 'node:http';
import { mintErrorToGatewayError } from '../coze/coze-errors.js';
import type { TokenCache } from '../coze/token-cache.js';
import { GatewayError } from '../errors.js';
import type { Admission } from '../proxy/admit.js';
import { readJsonBody } from '../proxy/request-body.js';

export const VENDING_PATH = '/gateway/token';
export const VENDING_ROUTE = 'gateway.token';
const MAX_VENDING_BODY_BYTES = 8 * 1024;

/**
 * `POST /gateway/token`: hands the caller the Coze token of their own session, for the Web Chat
 * SDK's `auth.onRefreshToken` (https://www.coze.cn/open/docs/developer_guides/install_web_sdk). The session always comes from the
 * authenticated identity, never from the client. If the SDK reports the token it holds as bad
 * (`old_token` equal to the cached one), a fresh one is minted.
 */
export async function vendToken(req: IncomingMessage, res: ServerResponse, admission: Admission, tokens: TokenCache): Promise<void> {
  const oldToken = await readOldToken(req);
  if (oldToken !== undefined) await tokens.invalidateIfSame(admission.sessionName, oldToken);
  let token;
  try {
    token = (await tokens.get(admission.sessionName)).token;
  } catch (err) {
    throw mintErrorToGatewayError(err);
  }
  const body = JSON.stringify({
    access_token: token.accessToken,
    expires_in: token.expiresAt,
    token_type: 'Bearer',
    session_name: admission.sessionName,
  });
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    pragma: 'no-cache',
  });
  res.end(body);
}

async function readOldToken(req: IncomingMessage): Promise<string | undefined> {
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return undefined;
  const body = await readJsonBody(req, MAX_VENDING_BODY_BYTES);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new GatewayError('bad-json-body', { detail: 'Expected {"old_token": "..."} or no body.' });
  const old = (body as Record<string, unknown>).old_token;
  if (old === undefined || old === null || old === '') return undefined;
  if (typeof old !== 'string') throw new GatewayError('bad-json-body', { detail: 'old_token must be a string.' });
  return old;
}
