import { createCidrMatcher } from '../http/client-ip.js';
import { AuthError, type IdentitySourceImpl } from './identity.js';

/**
 * An identity set by a trusted hop: an auth proxy in front, or the app itself next to a sidecar.
 * Accepted only from the allowFrom CIDRs; from anywhere else it is a 401, not silently ignored,
 * because it means someone is trying to claim an identity (SPEC section 3.3).
 */
export function createTrustedHeaderSource(options: {
  name: string;
  allowFrom: readonly string[];
  /** Each refusal from outside allowFrom, with the TCP peer's address (SPEC section 3.3: logged). */
  onUntrustedSource?: (remoteAddress: string | undefined) => void;
}): IdentitySourceImpl {
  const header = options.name.toLowerCase();
  const trusted = createCidrMatcher(options.allowFrom);
  return {
    name: 'trusted_header',
    // Never the header's name: that would tell anyone without a credential which header to forge
    // should allowFrom be wider than meant. Operators find it in the `listening` log line.
    credentialHint: 'the request through the trusted proxy (or app) that authenticates its caller',
    authenticate(req) {
      const value = req.headers[header];
      if (value === undefined) return undefined;
      if (!trusted(req.remoteAddress)) {
        options.onUntrustedSource?.(req.remoteAddress);
        throw new AuthError('trusted_header', 'untrusted_source', `The ${header} header is only accepted from identity.trustedHeader.allowFrom.`, 'untrusted-identity-header');
      }
      if (Array.isArray(value) || !/^[\x20-\x7e]{1,256}$/.test(value) || value.trim() === '') {
        throw new AuthError('trusted_header', 'malformed', `The ${header} header must hold one printable identifier.`);
      }
      return { subject: value.trim(), source: 'trusted_header', claims: {} };
    },
  };
}
