import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayConfig } from '../config/load.js';
import { GatewayError, type ErrorReason } from '../errors.js';
import type { Maybe } from '../maybe.js';
import type { WatchedFileOptions } from '../config/watched-file.js';
import { createApiKeySource, watchApiKeys, type ApiKeyTable } from './api-key-source.js';
import { createJwtSource } from './jwt-source.js';
import { createTrustedHeaderSource } from './trusted-header-source.js';

export const IDENTITY_SOURCES = ['jwt', 'api_key', 'trusted_header'] as const;
export type IdentitySource = (typeof IDENTITY_SOURCES)[number];

/** Closed set: the `reason` label of coze_gateway_auth_failures_total. */
export const AUTH_FAILURE_REASONS = [
  'missing',
  'malformed',
  'expired',
  'not_yet_valid',
  'bad_signature',
  'bad_claims',
  'unknown_key',
  'bad_subject',
  'unknown_api_key',
  'untrusted_source',
  'jwks_unavailable',
] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];

export interface Identity {
  subject: string;
  issuer?: string;
  source: IdentitySource;
  claims: Readonly<Record<string, unknown>>;
}

export interface CredentialRequest {
  headers: IncomingHttpHeaders;
  remoteAddress: string | undefined;
  /** Header names and values as sent; Node keeps only the first of a repeated Authorization. */
  rawHeaders?: readonly string[];
  /** WebSocket upgrades only: browsers put the credential in the `authorization` query parameter. */
  queryAuthorization?: string;
}

/** A 401 with the source and the reason kept for metrics; its message never holds the credential. */
export class AuthError extends GatewayError {
  readonly source: IdentitySource | 'none';
  readonly failure: AuthFailureReason;
  constructor(source: IdentitySource | 'none', failure: AuthFailureReason, detail?: string, reason: ErrorReason = failure === 'missing' ? 'credential-missing' : 'credential-invalid') {
    super(reason, detail ? { detail } : {});
    this.source = source;
    this.failure = failure;
  }
}

export interface IdentitySourceImpl {
  readonly name: IdentitySource;
  /**
   * undefined: this source's credential is absent. Throws (or rejects with) AuthError when present
   * but invalid. A plain value when no I/O is needed (a JWT already verified, an API key).
   */
  authenticate(req: CredentialRequest): Maybe<Identity | undefined>;
  /** For /readyz: false while a remote key set has never been fetched. */
  ready?(): Promise<boolean>;
  /** How a caller sends this source's credential, for the 401 a caller without one gets. */
  readonly credentialHint?: string;
  /** Stops what the source watches (a reloaded file). */
  close?(): void;
}

const CREDENTIAL_HINTS: Record<IdentitySource, string> = {
  jwt: '"Authorization: Bearer <JWT>"',
  api_key: '"X-Api-Key: <API key>" (or "Authorization: Bearer <API key>")',
  trusted_header: 'the trusted identity header',
};

/** What a caller without a credential is told to send: only what this gateway looks at. */
export function missingCredentialDetail(sources: readonly Pick<IdentitySourceImpl, 'name' | 'credentialHint'>[]): string {
  const hints = [...new Set(sources.map((s) => s.credentialHint ?? CREDENTIAL_HINTS[s.name]))];
  return hints.length === 0 ? 'No identity source is configured.' : `Send ${hints.join(' or ')}.`;
}

/** The identity sources a config turns on, in the order the chain asks them. */
export function configuredSources(config: GatewayConfig['identity']): IdentitySource[] {
  const sources: IdentitySource[] = [];
  if (config.trustedHeader.name) sources.push('trusted_header');
  if (config.jwt.jwksUrl || config.jwt.publicKey || config.jwt.secret) sources.push('jwt');
  if (config.apiKeys.file) sources.push('api_key');
  return sources;
}

export interface Authenticator {
  /** The caller's identity: a plain value when every source asked could answer without I/O. */
  authenticate(req: CredentialRequest): Maybe<Identity>;
  ready(): Promise<boolean>;
  close(): void;
}

/**
 * The source chain of SPEC section 3: the first source whose credential is present decides.
 * A present but invalid credential is a 401 and never falls through to the next source.
 * A credential header sent twice is refused outright: Node keeps the first Authorization and
 * drops the rest, and a proxy in front may have checked the other one.
 */
export function createAuthenticator(sources: IdentitySourceImpl[], credentialHeaders: readonly string[] = ['authorization', 'x-api-key']): Authenticator {
  const singletons = new Set(credentialHeaders.map((h) => h.toLowerCase()));
  const missing = missingCredentialDetail(sources);
  /** Asks the sources from `first` on; waits only for a source that has to. */
  function fromSource(req: CredentialRequest, first: number): Maybe<Identity> {
    for (let i = first; i < sources.length; i++) {
      const found = (sources[i] as IdentitySourceImpl).authenticate(req);
      if (found instanceof Promise) return found.then((identity) => identity ?? fromSource(req, i + 1));
      if (found) return found;
    }
    throw new AuthError('none', 'missing', missing);
  }
  return {
    authenticate(req) {
      if (req.rawHeaders) assertSentOnce(req.rawHeaders, singletons);
      return fromSource(req, 0);
    },
    async ready() {
      const states = await Promise.all(sources.map((s) => (s.ready ? s.ready() : Promise.resolve(true))));
      return states.every(Boolean);
    },
    close() {
      for (const source of sources) source.close?.();
    },
  };
}

function assertSentOnce(rawHeaders: readonly string[], names: ReadonlySet<string>): void {
  const seen = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (!names.has(name)) continue;
    if (seen.has(name)) throw new AuthError('none', 'malformed', `(${name})`, 'duplicate-header');
    seen.add(name);
  }
}

/** A Bearer value shaped like a compact JWS goes to the JWT source; anything else is an API key. */
export function looksLikeJwt(value: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value);
}

/**
 * The caller's bearer credential, from the Authorization header or (WebSocket) the query.
 * Returns undefined when none is sent; throws when it is sent but malformed.
 */
export function bearerCredential(req: CredentialRequest, source: IdentitySource): string | undefined {
  const header = req.headers.authorization;
  const raw = header ?? req.queryAuthorization;
  if (raw === undefined || raw === '') return undefined;
  // A comma-joined value (a client that folded two credentials into one line) is refused too.
  const match = /^Bearer ([^\s,]+)$/i.exec(raw.trim());
  if (!match) throw new AuthError(source, 'malformed', 'Expected "Authorization: Bearer <credential>".');
  return match[1] as string;
}

export async function createAuthenticatorFromConfig(
  config: GatewayConfig['identity'],
  deps: { now?: () => number; onApiKeysReload?: WatchedFileOptions<ApiKeyTable>['onReload']; onUntrustedHeader?: (remoteAddress: string | undefined) => void } = {},
): Promise<Authenticator> {
  const sources: IdentitySourceImpl[] = [];
  const trustedHeader = config.trustedHeader;
  if (trustedHeader.name) sources.push(createTrustedHeaderSource({ name: trustedHeader.name, allowFrom: trustedHeader.allowFrom, ...(deps.onUntrustedHeader ? { onUntrustedSource: deps.onUntrustedHeader } : {}) }));
  const jwt = config.jwt;
  if (jwt.jwksUrl || jwt.publicKey || jwt.secret) {
    sources.push(
      await createJwtSource({
        ...(jwt.jwksUrl ? { jwksUrl: jwt.jwksUrl } : {}),
        ...(jwt.publicKey ? { publicKey: jwt.publicKey } : {}),
        ...(jwt.secret ? { secret: jwt.secret } : {}),
        ...(jwt.algorithms ? { algorithms: jwt.algorithms } : {}),
        ...(jwt.issuer ? { issuer: jwt.issuer } : {}),
        ...(jwt.audience ? { audience: jwt.audience } : {}),
        allowMissingAudience: jwt.allowMissingAudience,
        accessTokenTypes: jwt.accessTokenTypes,
        subjectClaim: jwt.subjectClaim,
        clockToleranceSeconds: jwt.clockToleranceSeconds,
        jwksCooldownSeconds: jwt.jwksCooldownSeconds,
        jwksCacheMaxAgeSeconds: jwt.jwksCacheMaxAgeSeconds,
        jwksTimeoutSeconds: jwt.jwksTimeoutSeconds,
        claimAllBearer: !config.apiKeys.file,
        ...(deps.now ? { now: deps.now } : {}),
      }),
    );
  }
  if (config.apiKeys.file) {
    const keys = watchApiKeys({ path: config.apiKeys.file, ...(deps.onApiKeysReload ? { onReload: deps.onApiKeysReload } : {}) });
    sources.push(createApiKeySource({ keys: () => keys.current, close: () => keys.close() }));
  }
  return createAuthenticator(sources, ['authorization', 'x-api-key', ...(config.trustedHeader.name ? [config.trustedHeader.name] : [])]);
}
