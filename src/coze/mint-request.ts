import type { Identity } from '../auth/identity.js';
import type { GatewayConfig } from '../config/load.js';
import { createSessionNamer } from '../session/session-name.js';

/**
 * The channel-app scope of a token request (Coze's oauth_jwt_channel page:
 * https://www.coze.cn/open/docs/developer_guides/oauth_jwt_channel): the permission points the token holds and the bots it may chat
 * with. Coze applies it to channel apps only; without it a channel token holds every
 * permission the app was authorized for.
 */
export interface CozeScope {
  account_permission: { permission_list: readonly string[] };
  attribute_constraint: { connector_bot_chat_attribute: { bot_id_list: readonly string[] } };
}

/** What one Coze token is minted with. */
export interface MintRequest {
  sessionName: string;
  /** The JWT's session_context.device_info.custom_consumer (https://www.coze.cn/open/docs/developer_guides/oauth_jwt). */
  customConsumer?: string;
  /** Sent in the token request body. */
  scope?: CozeScope;
}

export function buildScope(permissionList: readonly string[], botIdList: readonly string[]): CozeScope {
  return {
    account_permission: { permission_list: [...permissionList] },
    attribute_constraint: { connector_bot_chat_attribute: { bot_id_list: [...botIdList] } },
  };
}

/**
 * The token cache holds one token per key. A key is the session_name alone while tokens carry
 * nothing else, so nothing changes for a gateway without these hooks (nor for the tokens it has
 * in Redis). With a custom_consumer or a scope, two callers that share a session_name may need
 * different tokens (another custom_consumer; a vended token narrower than a proxied one), so
 * the key becomes `session_name NUL custom_consumer NUL scope`. A session_name is printable
 * ASCII (session-name.ts) and so is a custom_consumer, so NUL never occurs inside the parts.
 * Keys reach Redis only hashed (redis-token-store.ts).
 */
export interface TokenKeys {
  /** The key of the token a proxied request (HTTP or WebSocket) uses. */
  proxied(identity: Identity, sessionName: string): string;
  /** The key of the token POST /gateway/token hands out. */
  vended(identity: Identity, sessionName: string): string;
  /** What the token of `key` is minted with. */
  mintRequest(key: string): MintRequest;
  sessionNameOf(key: string): string;
}

export interface TokenKeyOptions {
  customConsumer?: ((identity: Identity) => string) | undefined;
  proxiedScope?: CozeScope | undefined;
  vendedScope?: CozeScope | undefined;
}

const SEPARATOR = '\u0000';

export function createTokenKeys(options: TokenKeyOptions): TokenKeys {
  const { customConsumer, proxiedScope, vendedScope } = options;
  const plain = !customConsumer && !proxiedScope && !vendedScope;
  // Equal scopes share one token: a vended token then is the proxied one, as without scopes.
  const vendedTag = vendedScope && JSON.stringify(vendedScope) !== JSON.stringify(proxiedScope) ? 'v' : proxiedScope ? 'p' : '';
  const scopes: Record<string, CozeScope | undefined> = { p: proxiedScope, v: vendedScope };
  const key = (identity: Identity, sessionName: string, tag: string) => {
    if (plain) return sessionName;
    return `${sessionName}${SEPARATOR}${customConsumer ? customConsumer(identity) : ''}${SEPARATOR}${tag}`;
  };
  return {
    proxied: (identity, sessionName) => key(identity, sessionName, proxiedScope ? 'p' : ''),
    vended: (identity, sessionName) => key(identity, sessionName, vendedTag),
    mintRequest(k) {
      const [sessionName = '', consumer = '', tag = ''] = k.split(SEPARATOR);
      const scope = scopes[tag];
      return { sessionName, ...(consumer ? { customConsumer: consumer } : {}), ...(scope ? { scope } : {}) };
    },
    sessionNameOf: (k) => {
      const end = k.indexOf(SEPARATOR);
      return end === -1 ? k : k.slice(0, end);
    },
  };
}

/**
 * Coze's own per-user hooks, opt-in (issue 18): the JWT's custom_consumer, rendered like the
 * session_name, and the channel scope of proxied and vended tokens. Vended tokens leave the
 * gateway's route and bot allowlists behind, so they get the narrowest scope configured:
 * tokenVending.permissionList when set, the proxied scope's bots always.
 */
export function tokenKeysFromConfig(config: GatewayConfig): TokenKeys {
  const { sessionContext } = config.coze;
  const customConsumer = sessionContext.customConsumer
    ? createSessionNamer({
        template: sessionContext.customConsumer,
        prefix: '',
        ...(sessionContext.customConsumerHmacSecret ? { hmacSecret: sessionContext.customConsumerHmacSecret } : {}),
        setting: 'coze.sessionContext.customConsumer',
        invalidReason: 'bad-custom-consumer',
      })
    : undefined;
  return createTokenKeys({ customConsumer, ...scopesFromConfig(config) });
}

/** The scopes of proxied and vended tokens; none unless coze.scope.enabled. */
export function scopesFromConfig(config: GatewayConfig): { proxiedScope?: CozeScope; vendedScope?: CozeScope } {
  const { scope } = config.coze;
  if (!scope.enabled) return {};
  const bots = scope.botIdList ?? config.policy.allowedBotIds ?? [];
  return {
    proxiedScope: buildScope(scope.permissionList, bots),
    vendedScope: buildScope(config.tokenVending.permissionList ?? scope.permissionList, bots),
  };
}
