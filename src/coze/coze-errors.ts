import { GatewayError } from '../errors.js';
import type { Maybe } from '../maybe.js';
import type { TokenCache, TokenLookup } from './token-cache.js';
import { TokenMintError, type CozeToken } from './token-client.js';

/**
 * The session's Coze token, cached or minted; a failed mint is the error the client gets. A
 * plain value when the cached token is fresh (src/maybe.ts).
 */
export function lookupToken(tokens: TokenCache, sessionName: string): Maybe<CozeToken> {
  let found: Maybe<TokenLookup>;
  try {
    found = tokens.lookup(sessionName);
  } catch (err) {
    throw mintErrorToGatewayError(err);
  }
  if (!(found instanceof Promise)) return found.token;
  return found.then(
    (lookup) => lookup.token,
    (err: unknown) => {
      throw mintErrorToGatewayError(err);
    },
  );
}

/**
 * Maps a failed mint to the client-facing error: 504 when time ran out, 502 otherwise, with
 * the Coze error_code named so that an operator can act (https://www.coze.cn/open/docs/developer_guides/oauth_jwt, error codes).
 * The X-Tt-Logid goes to the log, not to the client.
 */
export function mintErrorToGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof TokenMintError) {
    return new GatewayError(err.outcome === 'timeout' ? 'token-mint-timeout' : 'token-mint-failed', { detail: describeMintError(err), cause: err });
  }
  return new GatewayError('token-mint-failed', { cause: err });
}

/**
 * What went wrong and what to check, for the 502's msg and for `check-config --mint`: Coze's
 * error_code and its (scrubbed) error_message, then the settings that usually cause it.
 */
export function describeMintError(err: TokenMintError): string {
  const hint = err.outcome === 'invalid_client' ? ' Check coze.appId, coze.keyId, coze.privateKey, coze.audience and the clock.' : '';
  return `${err.message}.${hint}`;
}
