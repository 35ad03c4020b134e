import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { compactVerify, decodeProtectedHeader } from 'jose';
import type { EmulatorApp, ExchangeRecord, IssuedToken } from './types.js';

export interface TokenEndpointOptions {
  apps: EmulatorApp[];
  audience: string;
  now: () => number;
  maxJwtWindowSeconds: number;
  clockSkewSeconds: number;
}

export type TokenResult =
  | { ok: true; accessToken: string; expiresIn: number; sessionName: string; appId: string; record: ExchangeRecord }
  | { ok: false; errorCode: string; errorMessage: string };

const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/**
 * The Coze token endpoint: it really verifies the RS256 signature with the app's registered
 * key, the claims, and that each jti is used once (Coze's OAuth JWT page:
 * https://www.coze.cn/open/docs/developer_guides/oauth_jwt).
 *
 * error_code values are Coze's documented ones. Coze documents no error_message for
 * invalid_client, so these are the emulator's own wording. The one real message seen in public
 * reports (coze-dev/coze-py issue 148, an unregistered kid) is copied as Coze spells it, and the
 * others follow its "invalid jwt: ..." pattern.
 */
export function createTokenEndpoint(options: TokenEndpointOptions) {
  const keys = new Map<string, { app: EmulatorApp; key: KeyObject }>();
  for (const app of options.apps) {
    if (app.keys.length > 3) throw new TypeError(`app ${app.appId}: Coze allows at most 3 keys per app`);
    for (const k of app.keys) keys.set(k.kid, { app, key: createPublicKey(k.publicKeyPem) });
  }
  const usedJti = new Map<string, number>();
  const tokens = new Map<string, IssuedToken>();

  function fail(errorCode: string, errorMessage: string): TokenResult {
    return { ok: false, errorCode, errorMessage };
  }

  function purgeJti(nowSeconds: number): void {
    for (const [jti, exp] of usedJti) if (exp < nowSeconds - options.clockSkewSeconds) usedJti.delete(jti);
  }

  async function exchange(req: IncomingMessage, body: unknown): Promise<TokenResult> {
    const auth = req.headers.authorization ?? '';
    const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(auth);
    if (!match) return fail('invalid_client', 'the Authorization header must carry a signed JWT');
    const jwt = match[1] as string;
    let header;
    try {
      header = decodeProtectedHeader(jwt);
    } catch {
      return fail('invalid_client', 'the JWT header cannot be decoded');
    }
    if (header.alg !== 'RS256') return fail('invalid_client', 'the JWT must be signed with RS256');
    if (header.typ !== 'JWT') return fail('invalid_client', 'the JWT header typ must be JWT');
    const registered = typeof header.kid === 'string' ? keys.get(header.kid) : undefined;
    if (!registered) return fail('invalid_client', 'invalid jwt: kid not been registred');
    let payload: Record<string, unknown>;
    try {
      const verified = await compactVerify(jwt, registered.key, { algorithms: ['RS256'] });
      payload = JSON.parse(new TextDecoder().decode(verified.payload)) as Record<string, unknown>;
    } catch {
      return fail('invalid_client', 'invalid jwt: signature is invalid');
    }
    const now = Math.floor(options.now() / 1000);
    const skew = options.clockSkewSeconds;
    if (payload.iss !== registered.app.appId) return fail('invalid_client', 'iss must be the id of the app that owns kid');
    if (payload.aud !== options.audience) return fail('invalid_client', `invalid jwt: aud is invalid, expected ${options.audience}`);
    const { iat, exp, jti } = payload;
    if (typeof iat !== 'number' || typeof exp !== 'number') return fail('invalid_client', 'iat and exp are required');
    if (typeof jti !== 'string' || jti.length < 16) return fail('invalid_client', 'jti is required (at least 16 characters)');
    if (exp <= iat) return fail('invalid_client', 'exp must be after iat');
    if (exp < now - skew) return fail('invalid_client', 'the JWT has expired');
    if (iat > now + skew) return fail('invalid_client', 'iat is in the future');
    if (exp - iat > options.maxJwtWindowSeconds) return fail('invalid_client', 'the JWT lifetime is too long');
    purgeJti(now);
    if (usedJti.has(jti)) return fail('invalid_client', 'this JWT was already used (jti replay)');
    if (payload.session_name !== undefined && typeof payload.session_name !== 'string') return fail('invalid_client', 'session_name must be a string');
    if (registered.app.disabled) return fail('access_deny', `app: ${registered.app.name ?? registered.app.appId} is currently deactivated by the owner`);

    if (typeof body !== 'object' || body === null || Array.isArray(body)) return fail('invalid_request', 'invalid request: body');
    const { grant_type: grantType, duration_seconds: duration, scope } = body as Record<string, unknown>;
    if (grantType !== GRANT_TYPE) return fail('unsupported_grant_type', `not supported grant type: ${String(grantType)}`);
    const seconds = duration === undefined ? 900 : duration;
    if (typeof seconds !== 'number' || !Number.isInteger(seconds) || seconds < 1 || seconds > 86399) return fail('invalid_request', 'invalid request: duration_seconds');
    const scopeProblem = scopeProblemOf(scope);
    if (scopeProblem) return fail('invalid_request', `invalid request: ${scopeProblem}`);

    usedJti.set(jti, exp);
    const accessToken = `czs_${randomBytes(32).toString('base64url')}`;
    const sessionName = typeof payload.session_name === 'string' ? payload.session_name : '';
    const consumer = customConsumerOf(payload.session_context);
    const bots = registered.app.type === 'channel' ? scopeBots(scope) : undefined;
    tokens.set(accessToken, {
      appId: registered.app.appId,
      sessionName,
      expiresAtMs: (now + seconds) * 1000,
      revoked: false,
      ...(consumer !== undefined ? { customConsumer: consumer } : {}),
      ...(bots ? { botIds: bots } : {}),
    });
    const record: ExchangeRecord = {
      appId: registered.app.appId,
      sessionName,
      ...(payload.session_context !== undefined ? { sessionContext: payload.session_context } : {}),
      ...(scope !== undefined ? { scope } : {}),
      accessToken,
    };
    return { ok: true, accessToken, expiresIn: now + seconds, sessionName, appId: registered.app.appId, record };
  }

  return {
    exchange,
    /** The live binding of a token, or undefined when it is unknown, revoked or expired. */
    resolve(token: string): IssuedToken | undefined {
      const issued = tokens.get(token);
      if (!issued || issued.revoked || issued.expiresAtMs <= options.now()) return undefined;
      return issued;
    },
    revoke(token: string): void {
      const issued = tokens.get(token);
      if (issued) issued.revoked = true;
    },
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringList = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
/** Null stands for absent in a token request: the SDKs send null for what they do not set (cozepy's scope, coze-go's permission lists). */
const given = (v: unknown): boolean => v !== undefined && v !== null;

/**
 * The JWT's session_context.device_info.custom_consumer (Coze's oauth_jwt page), when it is a
 * string. Coze documents no error for a malformed session_context: it is accepted and what is
 * not a string is ignored.
 */
function customConsumerOf(context: unknown): string | undefined {
  const consumer = isObject(context) && isObject(context.device_info) ? context.device_info.custom_consumer : undefined;
  return typeof consumer === 'string' ? consumer : undefined;
}

/**
 * The token request's scope (Coze's oauth_jwt_channel page): absent or null (the Python SDK sends
 * null), or an object whose account_permission.permission_list and
 * attribute_constraint.connector_bot_chat_attribute.bot_id_list are lists of strings; any field
 * set to null counts as absent (coze-go sends null for those it does not set). Coze
 * answers a wrong parameter with invalid_request and "invalid request: {parameter}"
 * (oauth_jwt_channel); which parameter path it names for a nested field is not documented, so
 * the dotted path here is the emulator's wording. The Go SDK's workspace_permission and
 * workflow_permission are tolerated as objects.
 */
function scopeProblemOf(scope: unknown): string | undefined {
  if (!given(scope)) return undefined;
  if (!isObject(scope)) return 'scope';
  const account = scope.account_permission;
  if (given(account)) {
    if (!isObject(account)) return 'scope.account_permission';
    if (given(account.permission_list) && !isStringList(account.permission_list)) return 'scope.account_permission.permission_list';
  }
  const constraint = scope.attribute_constraint;
  if (given(constraint)) {
    if (!isObject(constraint)) return 'scope.attribute_constraint';
    const chat = constraint.connector_bot_chat_attribute;
    if (given(chat)) {
      if (!isObject(chat)) return 'scope.attribute_constraint.connector_bot_chat_attribute';
      if (given(chat.bot_id_list) && !isStringList(chat.bot_id_list)) return 'scope.attribute_constraint.connector_bot_chat_attribute.bot_id_list';
    }
  }
  for (const name of ['workspace_permission', 'workflow_permission']) {
    if (given(scope[name]) && !isObject(scope[name])) return `scope.${name}`;
  }
  return undefined;
}

/** The bots a (valid) scope lets a channel token chat with; undefined when it names none. */
function scopeBots(scope: unknown): ReadonlySet<string> | undefined {
  const list = (scope as { attribute_constraint?: { connector_bot_chat_attribute?: { bot_id_list?: string[] } } } | null | undefined)?.attribute_constraint?.connector_bot_chat_attribute?.bot_id_list;
  return list ? new Set(list) : undefined;
}
