import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  importSPKI,
  jwtVerify,
  type CryptoKey,
  type FetchImplementation,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { LRUCache } from 'lru-cache';
import type { Maybe } from '../maybe.js';
import { AuthError, bearerCredential, looksLikeJwt, type Identity, type IdentitySourceImpl } from './identity.js';

export interface JwtSourceOptions {
  jwksUrl?: string;
  /** PEM (SPKI) or a public JWK as JSON. */
  publicKey?: string;
  secret?: string;
  algorithms?: string[];
  /** Required (SPEC section 3.1). */
  issuer?: string[];
  /** Required, unless allowMissingAudience. */
  audience?: string[];
  /** For an identity provider that sets no aud: tokens without aud pass, tokens with any aud are refused. */
  allowMissingAudience?: boolean;
  /** The typ values of an access token; JWT and at+jwt when absent. */
  accessTokenTypes?: readonly string[];
  subjectClaim: string;
  clockToleranceSeconds: number;
  jwksCooldownSeconds: number;
  jwksCacheMaxAgeSeconds: number;
  /** A JWKS fetch slower than this fails (the request gets 503). */
  jwksTimeoutSeconds?: number;
  /** When no API key source exists, every Bearer value is treated as a JWT. */
  claimAllBearer?: boolean;
  now?: () => number;
}

const MAX_TOKEN_LENGTH = 8 * 1024;
/** Verified tokens are remembered this long at most, and never past their exp. */
const VERIFIED_TTL_MS = 60_000;
/** The longest a failed JWKS fetch holds further fetches back. */
const JWKS_FAILURE_HOLD_MS = 5000;
const KEY_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'];
/**
 * The typ values of an access token: JWT, or at+jwt (RFC 9068). The identity provider's key
 * also signs other JWTs that can carry a sub, its iss and this gateway's aud: logout tokens
 * (logout+jwt, OpenID Connect Back-Channel Logout), security event tokens (secevent+jwt, RFC
 * 8417), introspection answers. Explicit typing keeps them apart (RFC 8725 section 3.11).
 */
const ACCESS_TOKEN_TYPES = ['JWT', 'at+jwt'];

interface Verified {
  identity: Identity;
  expiresAtMs: number;
}

/**
 * Caller JWTs, verified with jose under strict settings (SPEC section 3.1): a restricted
 * algorithm list (so `alg: none` and HS/RS confusion cannot verify), a required `exp`, the
 * configured `iss`/`aud`, an access token's `typ` if any, an `iat` that is not in the future,
 * and a clock tolerance. `jku`/`x5u` headers are ignored: keys come only from the configured
 * source. Successful verifications are cached per token, since verifying the same token on
 * every request is the largest avoidable cost on the hot path.
 */
export async function createJwtSource(options: JwtSourceOptions): Promise<IdentitySourceImpl> {
  // The config loader says so to the operator; this guards every other caller.
  if (!options.issuer?.length) throw new TypeError('a JWT source needs an issuer (SPEC section 3.1)');
  const audience = options.audience?.length ? options.audience : undefined;
  if (!audience && !options.allowMissingAudience) throw new TypeError('a JWT source needs an audience, or allowMissingAudience (SPEC section 3.1)');
  const typeList = (options.accessTokenTypes ?? ACCESS_TOKEN_TYPES).join(' or ');
  const accessTypes = new Set((options.accessTokenTypes ?? ACCESS_TOKEN_TYPES).map(typeName));
  if (audience && options.allowMissingAudience) throw new TypeError('set audience or allowMissingAudience, not both');
  const now = options.now ?? Date.now;
  const algorithms = options.algorithms ?? (options.secret ? ['HS256'] : KEY_ALGORITHMS);
  let key: JWTVerifyGetKey | CryptoKey | Uint8Array;
  let remote: ReturnType<typeof createRemoteJWKSet> | undefined;
  if (options.jwksUrl) {
    remote = createRemoteJWKSet(new URL(options.jwksUrl), {
      cooldownDuration: options.jwksCooldownSeconds * 1000,
      cacheMaxAge: options.jwksCacheMaxAgeSeconds * 1000,
      timeoutDuration: (options.jwksTimeoutSeconds ?? 5) * 1000,
      [customFetch]: fetchKeySet,
    });
    key = failFastWhileDown(remote, Math.min(JWKS_FAILURE_HOLD_MS, options.jwksCooldownSeconds * 1000), now);
  } else if (options.publicKey) {
    const text = options.publicKey.trim();
    if (text.startsWith('{')) {
      const jwk = JSON.parse(text) as JWK;
      key = createLocalJWKSet({ keys: [jwk] });
    } else {
      // One imported key per allowed algorithm family; the JWS header picks, the allowlist bounds.
      const imported = new Map<string, CryptoKey>();
      for (const alg of algorithms) {
        try {
          imported.set(alg, await importSPKI(text, alg));
        } catch {
          // This key type cannot do this algorithm (an RSA key and ES256): such tokens fail.
        }
      }
      key = async (header) => {
        const k = imported.get(header.alg ?? '');
        if (!k) throw new errors.JOSEAlgNotAllowed('the key cannot verify this algorithm');
        return k;
      };
    }
  } else if (options.secret) {
    key = new TextEncoder().encode(options.secret);
  } else {
    throw new TypeError('a JWT source needs jwksUrl, publicKey or secret');
  }

  const verified = new LRUCache<string, Verified>({ max: 10_000 });
  /** Verifications in flight: a burst of requests with one new token verifies it once. */
  const verifying = new Map<string, Promise<Identity>>();
  let jwksFetched = false;

  function verify(token: string): Maybe<Identity> {
    // Keyed by the token itself: it is already in memory, and hashing it cost more than the
    // lookup (bench/). The cache is bounded and entries die with the token's exp. A hit is
    // answered at once: the cached request path creates no promise (src/maybe.ts).
    const cached = verified.get(token);
    if (cached && now() < cached.expiresAtMs) return cached.identity;
    let pending = verifying.get(token);
    if (!pending) {
      // Without this, 1,000 concurrent first requests made 1,000 identical WebCrypto
      // verifications (bench/ section 4). A failure is shared the same way, and not kept.
      pending = verifyOnce(token).finally(() => verifying.delete(token));
      verifying.set(token, pending);
    }
    return pending;
  }

  async function verifyOnce(token: string): Promise<Identity> {
    let payload: JWTPayload;
    let type: unknown;
    try {
      const result = await jwtVerify(token, key as JWTVerifyGetKey, {
        algorithms,
        requiredClaims: ['exp'],
        clockTolerance: options.clockToleranceSeconds,
        currentDate: new Date(now()),
        issuer: options.issuer,
        ...(audience ? { audience } : {}),
      });
      payload = result.payload;
      type = result.protectedHeader.typ;
      if (remote) jwksFetched = true;
    } catch (err) {
      throw toAuthError(err);
    }
    if (!isAccessTokenType(type, accessTypes)) throw new AuthError('jwt', 'bad_claims', `The JWT typ header names another kind of token (expected ${typeList}).`);
    // allowMissingAudience: a token that names an audience names some application, never this gateway.
    if (!audience && payload.aud !== undefined) throw new AuthError('jwt', 'bad_claims', 'The JWT aud claim is not accepted.');
    // jose checks iat only against maxTokenAge; a token issued in the future (a skewed or forged
    // issuer clock) is refused here, with the same tolerance as exp and nbf (issue 15, finding 6).
    if (typeof payload.iat === 'number' && payload.iat > now() / 1000 + options.clockToleranceSeconds) {
      throw new AuthError('jwt', 'not_yet_valid', 'The JWT iat claim is in the future.');
    }
    const subject = readClaim(payload, options.subjectClaim);
    if (typeof subject !== 'string' || subject === '') throw new AuthError('jwt', 'bad_subject', `The claim ${options.subjectClaim} must be a non-empty string.`);
    const identity: Identity = { subject, source: 'jwt', claims: payload, ...(typeof payload.iss === 'string' ? { issuer: payload.iss } : {}) };
    const expMs = (payload.exp as number) * 1000;
    verified.set(token, { identity, expiresAtMs: Math.min(expMs, now() + VERIFIED_TTL_MS) });
    return identity;
  }

  return {
    name: 'jwt',
    authenticate(req) {
      const credential = bearerCredential(req, 'jwt');
      if (credential === undefined) return undefined;
      if (!looksLikeJwt(credential)) {
        if (options.claimAllBearer) throw new AuthError('jwt', 'malformed', 'The bearer credential is not a JWT.');
        return undefined;
      }
      if (credential.length > MAX_TOKEN_LENGTH) throw new AuthError('jwt', 'malformed', 'The JWT is too large.');
      return verify(credential);
    },
    async ready() {
      if (!remote || jwksFetched) return true;
      try {
        await remote.reload();
        jwksFetched = true;
      } catch {
        return false;
      }
      return true;
    },
  };
}

/**
 * jose bounds refetches after a successful fetch (cooldown), but not after a failed one: with
 * the IdP down and no key set cached, every request would start a new fetch. After a failure,
 * requests fail at once for a short hold, so an outage costs the IdP one fetch per hold.
 */
function failFastWhileDown(remote: JWTVerifyGetKey, holdMs: number, now: () => number): JWTVerifyGetKey {
  let heldUntil = 0;
  return async (header, token) => {
    if (now() < heldUntil) throw new errors.JWKSTimeout('the key set was unreachable moments ago');
    try {
      return await remote(header, token);
    } catch (err) {
      if (isFetchFailure(err)) heldUntil = now() + holdMs;
      throw err;
    }
  };
}

/** The key set could not be fetched at all: refused, DNS, TLS, or a URL fetch will not request. */
class KeySetFetchError extends Error {}

/**
 * fetch, with its failures marked where they happen: they are TypeErrors, as is a key-confusion
 * attempt (the caller's fault, 401), so only the place tells them apart. An unmarked one made
 * every JWT a 401 "malformed" while the identity provider could not be reached.
 */
const fetchKeySet: FetchImplementation = (url, init) =>
  fetch(url, init).catch((err: unknown) => {
    // jose turns the timeout of its own signal into JWKSTimeout.
    throw err instanceof Error && err.name === 'TimeoutError' ? err : new KeySetFetchError('the key set could not be fetched', { cause: err });
  });

/**
 * Any failure to obtain the key set. jose throws a plain JOSEError (no subclass) only for an
 * answer other than 200 and for a body that is not JSON.
 */
function isFetchFailure(err: unknown): boolean {
  return err instanceof KeySetFetchError || err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || (err instanceof errors.JOSEError && err.constructor === errors.JOSEError);
}

/** Media type names are case-insensitive and "application/" may be left out (RFC 7515 section 4.1.9). */
const typeName = (typ: string) => {
  const name = typ.toLowerCase();
  return name.startsWith('application/') ? name.slice('application/'.length) : name;
};

/** No typ, or an access token's. */
function isAccessTokenType(typ: unknown, accessTypes: ReadonlySet<string>): boolean {
  if (typ === undefined) return true;
  return typeof typ === 'string' && accessTypes.has(typeName(typ));
}

function readClaim(payload: JWTPayload, path: string): unknown {
  let node: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** Every verify failure, including the TypeError of a key-confusion attempt, becomes a 401. */
function toAuthError(err: unknown): AuthError {
  if (err instanceof errors.JWTExpired) return new AuthError('jwt', 'expired', 'The JWT has expired.');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' || err.claim === 'iat') return new AuthError('jwt', 'not_yet_valid', 'The JWT is not valid yet.');
    if (err.claim === 'exp') return new AuthError('jwt', 'malformed', 'The JWT has no exp claim.');
    return new AuthError('jwt', 'bad_claims', `The JWT ${err.claim} claim is not accepted.`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new AuthError('jwt', 'bad_signature', 'The JWT signature does not verify.');
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) return new AuthError('jwt', 'unknown_key', 'No key of the identity provider matches this JWT.');
  // The caller's credential may be fine: this is our outage, not theirs, so 503 rather than 401.
  if (isFetchFailure(err)) return new AuthError('jwt', 'jwks_unavailable', undefined, 'identity-provider-unavailable');
  return new AuthError('jwt', 'malformed', 'The JWT is malformed or uses an algorithm that is not allowed.');
}
