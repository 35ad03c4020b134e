import { configWarnings, loadConfig } from '../config/load.js';
import { describeMintError } from '../coze/coze-errors.js';
import { createJwtSigner } from '../coze/jwt-signer.js';
import { scopesFromConfig } from '../coze/mint-request.js';
import { createTokenClient, TokenMintError } from '../coze/token-client.js';
import type { ParsedArgs } from './args.js';

/**
 * `check-config [--mint SESSION]`: validates the whole configuration; with --mint it performs
 * one real exchange and prints the session and expiry. The token itself is never printed.
 */
export async function runCheckConfig(args: ParsedArgs): Promise<number> {
  const { mint: session, ...flags } = args.flags;
  const config = loadConfig({ flags, env: process.env });
  process.stdout.write(`configuration is valid (Coze app ${config.coze.appId} at ${config.coze.baseUrl}, aud ${config.coze.audience})\n`);
  for (const warning of configWarnings(config)) process.stderr.write(`coze-session-gateway: warning: ${warning}\n`);
  if (session === undefined) return 0;

  const signer = await createJwtSigner({
    appId: config.coze.appId,
    keyId: config.coze.keyId,
    privateKeyPem: config.coze.privateKey,
    audience: config.coze.audience,
    ttlSeconds: config.coze.jwtTtlSeconds,
  });
  const client = createTokenClient({
    baseUrl: config.coze.baseUrl,
    accountId: config.coze.accountId,
    signer,
    durationSeconds: config.coze.tokenTtlSeconds,
    deadlineMs: config.coze.mintDeadlineSeconds * 1000,
  });
  try {
    // With coze.scope.enabled the exchange carries the proxied tokens' scope, so a channel app's
    // binding and bot list are checked too.
    const { proxiedScope } = scopesFromConfig(config);
    const token = await client.exchange({ sessionName: session, ...(proxiedScope ? { scope: proxiedScope } : {}) });
    const inSeconds = token.expiresAt - Math.floor(Date.now() / 1000);
    process.stdout.write(`minted a token for session_name "${session}": expires at ${new Date(token.expiresAt * 1000).toISOString()} (in ${inSeconds} s)\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof TokenMintError)) throw err;
    const logId = err.logId ? ` (X-Tt-Logid ${err.logId})` : '';
    process.stderr.write(`token exchange failed: ${err.outcome}: ${describeMintError(err)}${logId}\n`);
    return 1;
  } finally {
    client.close();
  }
}
