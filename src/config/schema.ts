import { z } from 'zod';

/**
 * The config schema: the single source of truth for validation, the TypeScript type, the
 * environment variable names, `docs/configuration.md` and the comments of `config/default.yaml`.
 *
 * Every leaf is built by one of the helpers below, which attach a `SettingMeta` with `.meta()`.
 * Later issues add keys by adding leaves; nothing else needs reshaping.
 */
export type SettingType = 'integer' | 'string' | 'boolean' | 'list' | 'url' | 'enum' | 'routes';

export interface SettingMeta {
  /** Environment variable; absent for YAML-only settings. */
  env?: string;
  type: SettingType;
  description: string;
  /** Shown in docs; `undefined` means "unset". */
  default?: unknown;
  /** Human wording of a derived default, e.g. "host of coze.baseUrl". */
  defaultText?: string;
  /** Secrets may come from `<key>File` / `<ENV>_FILE` and are never printed. */
  secret?: boolean;
  /** Allowed values, for enums. */
  values?: readonly string[];
  /** Bounds of an integer, shown in the docs. */
  min?: number;
  max?: number;
}

type Bounds = { min?: number; max?: number };

function leaf<T extends z.ZodType>(schema: T, meta: SettingMeta): T {
  return schema.meta(meta as unknown as Record<string, unknown>) as T;
}

/** Env and flags arrive as strings; YAML may already have typed them. */
function parseIntString(value: unknown): unknown {
  if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) return Number(value.trim());
  return value;
}

function parseBoolString(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const v = value.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  return value;
}

/**
 * A YAML number where the setting is a Coze id: the ids are all digits, and Helm's `--set` and
 * many editors write them unquoted. load.ts reads integers past 2^53 as their digits, so none is
 * rounded. Only ids: elsewhere a YAML number is more likely a mistake (`007` reads as 7).
 */
function numberAsText(value: unknown): unknown {
  return typeof value === 'number' && Number.isSafeInteger(value) ? String(value) : value;
}

/** A list of Coze ids, where YAML may hold numbers (numberAsText). */
function parseIdList(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(numberAsText);
  if (typeof value === 'number') return [numberAsText(value)];
  return parseListString(value);
}

function parseListString(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function int(meta: Omit<SettingMeta, 'type' | 'default'> & Bounds & { default: number }) {
  let n = z.number().int();
  if (meta.min !== undefined) n = n.min(meta.min);
  if (meta.max !== undefined) n = n.max(meta.max);
  return leaf(z.preprocess(parseIntString, n).default(meta.default), { ...meta, type: 'integer' });
}

/**
 * Node's timers hold at most 2^31-1 ms: a longer delay fires after 1 ms, with only a
 * TimeoutOverflowWarning (UPSTREAM_TIMEOUT_SECONDS=3000000 timed every request out at once).
 */
export const TIMER_LIMIT_MS = 2 ** 31 - 1;
const DAY_SECONDS = 86400;

/** A duration in seconds: at most a day unless told otherwise, and never past a timer's limit. */
function seconds(meta: Omit<SettingMeta, 'type' | 'default'> & Bounds & { default: number }) {
  const max = meta.max ?? DAY_SECONDS;
  if (max * 1000 > TIMER_LIMIT_MS) throw new RangeError(`a duration setting may not exceed ${TIMER_LIMIT_MS} ms`);
  return int({ ...meta, max });
}

function bool(meta: Omit<SettingMeta, 'type' | 'default'> & { default: boolean }) {
  return leaf(z.preprocess(parseBoolString, z.boolean()).default(meta.default), { ...meta, type: 'boolean' });
}

function str(meta: Omit<SettingMeta, 'type' | 'default'> & { default: string }) {
  return leaf(z.string().default(meta.default), { ...meta, type: 'string' });
}

function optionalStr(meta: Omit<SettingMeta, 'type' | 'default'>) {
  return leaf(z.string().min(1).optional(), { ...meta, type: 'string' });
}

/** A Coze id (all digits): a YAML number is taken as its digits (numberAsText). Other text settings take no number. */
function optionalId(meta: Omit<SettingMeta, 'type' | 'default'>) {
  return leaf(z.preprocess(numberAsText, z.string().min(1)).optional(), { ...meta, type: 'string' });
}

function optionalIdList(meta: Omit<SettingMeta, 'type' | 'default'>) {
  return leaf(z.preprocess(parseIdList, z.array(z.string().min(1))).optional(), { ...meta, type: 'list' });
}

/** Base URLs take no path (paths are appended); `withPath` is for URLs of one resource (a JWKS). */
function urlSchema(options: { ws?: boolean; withPath?: boolean }) {
  const protocols = options.ws ? ['ws:', 'wss:'] : ['http:', 'https:'];
  const schema = z
    .string()
    .refine(
      (s) => {
        try {
          const u = new URL(s);
          return protocols.includes(u.protocol) && (options.withPath || u.pathname === '/' || u.pathname === '') && !u.search && !u.hash;
        } catch {
          return false;
        }
      },
      { message: `expected an absolute ${protocols.map((p) => p.slice(0, -1)).join(' or ')} URL${options.withPath ? '' : ' with no path'}` },
    )
    // Printed by check-config and the start-up log, and refused by fetch (a JWKS would never load).
    .refine((s) => !URL.canParse(s) || (!new URL(s).username && !new URL(s).password), {
      message: 'takes no user name or password (user:password@): it would be printed in logs, and the gateway does not send it',
    })
    .transform((s) => (options.withPath ? s : s.replace(/\/+$/, '')));
  return schema;
}

function httpUrl(meta: Omit<SettingMeta, 'type' | 'default'> & { default: string }, options: { ws?: boolean } = {}) {
  return leaf(urlSchema(options).default(meta.default), { ...meta, type: 'url' });
}

function optionalUrl(meta: Omit<SettingMeta, 'type' | 'default'>, options: { ws?: boolean; withPath?: boolean } = {}) {
  return leaf(urlSchema(options).optional(), { ...meta, type: 'url' });
}

function listSchema() {
  return z.preprocess(parseListString, z.array(z.string().min(1)));
}

function list(meta: Omit<SettingMeta, 'type' | 'default'> & { default: string[] }) {
  return leaf(listSchema().default(meta.default), { ...meta, type: 'list' });
}

function optionalList(meta: Omit<SettingMeta, 'type' | 'default'>) {
  return leaf(listSchema().optional(), { ...meta, type: 'list' });
}

function oneOf<const V extends readonly [string, ...string[]]>(values: V, meta: Omit<SettingMeta, 'type' | 'values' | 'default'> & { default: V[number] }) {
  return leaf(z.enum(values).default(meta.default as never), { ...meta, type: 'enum', values });
}

export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'HS256', 'HS384', 'HS512'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const routeName = z.string().regex(/^[a-z][a-z0-9_.-]{0,63}$/, 'route names are short lowercase slugs such as "chat" or "conversation.list"');

/**
 * An entry of policy.routes: a built-in endpoint's name, or a {name, method, path} rule. A rule
 * must be a built-in endpoint's method and path, or say `passthrough: true` (route-table.ts).
 */
const routeEntry = z.union([
  routeName,
  z
    .object({
      name: routeName,
      method: z.enum(['GET', 'POST', 'PUT', 'DELETE', 'PATCH']),
      path: z.string().regex(/^\/[A-Za-z0-9_/:.-]*$/, 'a path pattern such as /v1/conversations/:conversation_id'),
      passthrough: z.boolean().optional(),
    })
    .strict(),
]);

export type RouteEntry = z.infer<typeof routeEntry>;

export const configSchema = z
  .object({
    server: z
      .object({
        port: int({ env: 'PORT', default: 8080, min: 0, max: 65535, description: 'Main (proxy) port.' }),
        host: str({ env: 'HOST', default: '0.0.0.0', description: 'Main bind address. A sidecar uses 127.0.0.1.' }),
        maxBodyBytes: int({
          env: 'MAX_BODY_BYTES',
          default: 20971520,
          min: 1,
          description: 'Request bodies larger than this get 413. Counted as the body streams, never buffered.',
        }),
        keepAliveTimeoutSeconds: seconds({
          default: 65,
          min: 1,
          description: 'Idle keep-alive timeout for client connections. Keep it above your load balancer idle timeout (60 s on most).',
        }),
        headersTimeoutSeconds: seconds({
          default: 66,
          min: 1,
          description: 'Time allowed to receive the request headers (slowloris guard). Just above keepAliveTimeoutSeconds.',
        }),
        requestTimeoutSeconds: seconds({
          default: 0,
          min: 0,
          description: 'Deadline for receiving a whole request body, 0 for none (long uploads stay possible; idle uploads are cut by streamIdleTimeoutSeconds). Unless 0, at least server.headersTimeoutSeconds.',
        }),
        bodyReadTimeoutSeconds: seconds({
          env: 'BODY_READ_TIMEOUT_SECONDS',
          default: 30,
          min: 1,
          description:
            'Deadline for receiving a JSON body the gateway reads (the endpoints of docs/routes.md with a json body). Past it: 408, and the memory it held is released. Streamed uploads are not affected.',
        }),
        bufferedBodyBudgetBytes: int({
          env: 'BUFFERED_BODY_BUDGET_BYTES',
          default: 67108864,
          min: 1024,
          description:
            'Memory set aside for the JSON bodies being read, across all requests. A new body that does not fit gets 503 with Retry-After. At least server.maxBodyBytes.',
        }),
        maxHeadersCount: int({
          env: 'MAX_HEADERS_COUNT',
          default: 100,
          min: 10,
          max: 2000,
          description: 'Most header fields a request may carry; more get 431 (Node would otherwise drop the ones past its own limit unseen).',
        }),
        upstreamTimeoutSeconds: seconds({
          env: 'UPSTREAM_TIMEOUT_SECONDS',
          default: 300,
          min: 1,
          description: 'Deadline for Coze to send response headers. Past it the client gets 504.',
        }),
        streamIdleTimeoutSeconds: seconds({
          env: 'STREAM_IDLE_TIMEOUT_SECONDS',
          default: 300,
          min: 1,
          description:
            'A request or response that sends no byte for this long is ended (a Coze answer that stalls before the client got anything is a 504). Idle-based, so minute-long streams that keep talking are never cut. A client waiting for Coze is not cut by it: upstreamTimeoutSeconds bounds that wait.',
        }),
        shutdownGraceSeconds: seconds({
          env: 'SHUTDOWN_GRACE_SECONDS',
          default: 30,
          min: 0,
          description: 'Drain window on SIGTERM: in-flight requests and streams may finish within it.',
        }),
      })
      .strict()
      .prefault({}),
    admin: z
      .object({
        port: int({ env: 'ADMIN_PORT', default: 9091, min: 0, max: 65535, description: 'Port for /metrics, /healthz and /readyz.' }),
        host: str({ env: 'ADMIN_HOST', default: '0.0.0.0', description: 'Admin bind address.' }),
      })
      .strict()
      .prefault({}),
    coze: z
      .object({
        baseUrl: httpUrl({
          env: 'COZE_BASE_URL',
          default: 'https://api.coze.cn',
          description: 'Coze API base URL: https://api.coze.cn (China) or https://api.coze.com (global).',
        }),
        wsBaseUrl: optionalUrl(
          {
            env: 'COZE_WS_BASE_URL',
            defaultText: 'wss://ws.coze.cn for api.coze.cn, wss://ws.coze.com for api.coze.com',
            description: 'WebSocket upstream for the realtime APIs.',
          },
          { ws: true },
        ),
        appId: optionalId({ env: 'COZE_APP_ID', description: 'OAuth app id (the JWT iss). Required.' }),
        keyId: optionalId({ env: 'COZE_KEY_ID', description: 'Public key fingerprint of the OAuth app (the JWT kid). Required.' }),
        privateKey: optionalStr({
          env: 'COZE_PRIVATE_KEY',
          secret: true,
          description: 'The OAuth app private key, PEM (PKCS#8 or PKCS#1). Required, inline or as a file.',
        }),
        audience: optionalStr({
          env: 'COZE_AUDIENCE',
          defaultText: 'host of coze.baseUrl',
          description: 'JWT aud claim.',
        }),
        accountId: optionalId({
          env: 'COZE_ACCOUNT_ID',
          description: 'If set, tokens come from /api/permission/oauth2/account/{accountId}/token.',
        }),
        tokenTtlSeconds: int({
          env: 'COZE_TOKEN_TTL_SECONDS',
          default: 900,
          min: 60,
          max: 86399,
          description: 'duration_seconds asked of Coze for each access token.',
        }),
        refreshBeforeSeconds: seconds({
          env: 'COZE_REFRESH_BEFORE_SECONDS',
          default: 60,
          min: 0,
          description: 'A token is refreshed this long before its expires_in (minus up to 10% jitter). At most (coze.tokenTtlSeconds - 35) / 1.1, so that a fresh token is not stale at once.',
        }),
        tokenCacheMaxEntries: int({
          env: 'COZE_TOKEN_CACHE_MAX',
          default: 50000,
          min: 1,
          description: 'Bound of the per-session token cache (LRU).',
        }),
        jwtTtlSeconds: int({
          default: 600,
          min: 30,
          max: 3600,
          description: 'Lifetime (exp - iat) of each signed JWT. Short: the JWT is exchanged at once.',
        }),
        mintDeadlineSeconds: seconds({
          env: 'COZE_MINT_DEADLINE_SECONDS',
          default: 10,
          min: 1,
          description: 'Deadline for one token exchange including its retries. Past it the request gets 504.',
        }),
        sessionContext: z
          .object({
            customConsumer: optionalStr({
              env: 'COZE_CUSTOM_CONSUMER',
              description:
                'Opt-in: put a per-user value in the JWT\'s session_context.device_info.custom_consumer, Coze\'s own per-end-user quota and billing hook (Enterprise Ultimate). A template like session.template: {subject}, {issuer}, {source}, {claims.NAME}. Unset: no session_context is sent.',
            }),
            customConsumerHmacSecret: optionalStr({
              env: 'COZE_CUSTOM_CONSUMER_HMAC_SECRET',
              secret: true,
              description: 'If set, custom_consumer = base64url(HMAC-SHA256(rendered template)): Coze sees a stable pseudonym, never the user id (Coze asks for no sensitive identifiers there). At least 32 bytes.',
            }),
          })
          .strict()
          .prefault({}),
        scope: z
          .object({
            enabled: bool({
              env: 'COZE_SCOPE_ENABLED',
              default: false,
              description: 'Opt-in, for channel apps: send a scope with every token request, so each token can chat only with the listed bots and holds only the listed permission points (Coze ignores it for other app types).',
            }),
            permissionList: list({
              env: 'COZE_SCOPE_PERMISSIONS',
              default: ['Connector.botChat'],
              description: 'account_permission.permission_list of the scope (comma list of Coze permission points).',
            }),
            botIdList: optionalIdList({
              env: 'COZE_SCOPE_BOT_IDS',
              defaultText: 'policy.allowedBotIds',
              description: 'attribute_constraint.connector_bot_chat_attribute.bot_id_list of the scope (comma list). Every id must also be in policy.allowedBotIds when that is set.',
            }),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    identity: z
      .object({
        jwt: z
          .object({
            jwksUrl: optionalUrl(
              { env: 'IDENTITY_JWT_JWKS_URL', description: 'Verify callers\' JWTs with this remote key set, e.g. https://idp.example.com/.well-known/jwks.json (cached, bounded refetch).' },
              { withPath: true },
            ),
            publicKey: optionalStr({
              env: 'IDENTITY_JWT_PUBLIC_KEY',
              secret: true,
              description: 'Or verify with this static public key (PEM SPKI or a JWK as JSON).',
            }),
            secret: optionalStr({
              env: 'IDENTITY_JWT_SECRET',
              secret: true,
              description: 'Or verify with this HMAC secret (HS256/384/512), at least 32 bytes.',
            }),
            algorithms: optionalList({
              env: 'IDENTITY_JWT_ALGORITHMS',
              defaultText: 'RS256, ES256 and EdDSA for keys; HS256 for a secret',
              description: `Allowed JWT algorithms (comma list of ${JWT_ALGORITHMS.join(', ')}). Never "none".`,
            }),
            issuer: optionalList({
              env: 'IDENTITY_JWT_ISSUER',
              description:
                'The iss a JWT must carry, e.g. https://idp.example.com (comma list allowed). Required with a JWT source. With several, session.template must hold {issuer} (or see session.sharedNamespace).',
            }),
            audience: optionalList({
              env: 'IDENTITY_JWT_AUDIENCE',
              description:
                'The aud a JWT must carry: what your identity provider puts in tokens meant for this gateway, e.g. its client id or API identifier (comma list allowed). Required with a JWT source, unless identity.jwt.allowMissingAudience: a token the provider issued for another application is refused.',
            }),
            allowMissingAudience: bool({
              env: 'IDENTITY_JWT_ALLOW_MISSING_AUDIENCE',
              default: false,
              description:
                'Opt-out, for an identity provider that puts no aud in its tokens (Amazon Cognito access tokens, for one), instead of identity.jwt.audience: JWTs without aud are accepted and a JWT with any aud is refused. Weaker: a token the provider issued for another application gets in when it carries no aud either. Start-up logs a warning while it is on.',
            }),
            accessTokenTypes: list({
              env: 'IDENTITY_JWT_ACCESS_TOKEN_TYPES',
              default: ['JWT', 'at+jwt'],
              description:
                'The typ header values of an access token (case-insensitive, "application/" optional). A JWT with another typ is refused: the identity provider also signs logout tokens (logout+jwt), security events (secevent+jwt) and introspection answers, which may carry a sub and this aud. A JWT without typ passes. Add the type your provider gives access tokens if it is another.',
            }),
            subjectClaim: str({
              env: 'IDENTITY_JWT_SUBJECT_CLAIM',
              default: 'sub',
              description: 'Claim that names the user; a dotted path is allowed. Must be a non-empty string.',
            }),
            clockToleranceSeconds: int({ default: 30, min: 0, max: 300, description: 'Clock skew tolerated on exp and nbf.' }),
            jwksCooldownSeconds: seconds({
              default: 30,
              min: 1,
              description: 'Minimum time between two JWKS refetches (an unknown kid cannot make the gateway hammer the IdP).',
            }),
            jwksCacheMaxAgeSeconds: seconds({ default: 600, min: 1, description: 'Refetch the JWKS after this long.' }),
            jwksTimeoutSeconds: int({
              default: 5,
              min: 1,
              max: 60,
              description: 'A JWKS fetch slower than this fails: the caller gets 503 and further fetches are held back for up to 5 s.',
            }),
          })
          .strict()
          .prefault({}),
        apiKeys: z
          .object({
            file: optionalStr({
              env: 'IDENTITY_API_KEYS_FILE',
              description: 'YAML or JSON list of {subject, sha256}. Keys arrive in X-Api-Key or as Bearer. Reloaded when it changes (a removed key is refused within seconds, no restart); a version that does not parse, or reads empty, keeps the last good one in force and is logged and counted (coze_gateway_api_key_reloads_total). `[]` is no keys.',
            }),
          })
          .strict()
          .prefault({}),
        trustedHeader: z
          .object({
            name: optionalStr({
              env: 'IDENTITY_TRUSTED_HEADER',
              description: 'Header set by a trusted auth proxy or by the app next to a sidecar, e.g. x-forwarded-user.',
            }),
            allowFrom: list({
              env: 'IDENTITY_TRUSTED_HEADER_ALLOW_FROM',
              default: ['127.0.0.1/32', '::1/128'],
              description: 'Source CIDRs that may set the trusted header. From anywhere else it gets 401 and a warning is logged (at most one a minute).',
            }),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    session: z
      .object({
        template: str({
          env: 'SESSION_NAME_TEMPLATE',
          default: '{subject}',
          description:
            'Placeholders {subject}, {issuer} (empty without one), {source}, {claims.NAME} (a string claim: a caller without it, or with another type, gets 400; JWT callers only, so start-up refuses it next to API keys or a trusted header). Two placeholders need text between them, not starting with %. In every value but the last, % and the first character of each text between placeholders are percent-encoded, so no value can pass for a separator and two identities never share a name.',
        }),
        prefix: str({ env: 'SESSION_NAME_PREFIX', default: '', description: 'Prepended to every session_name, e.g. a tenant or environment.' }),
        sharedNamespace: bool({
          env: 'SESSION_SHARED_NAMESPACE',
          default: false,
          description:
            'With several identity sources and a template without {source}, or several issuers in identity.jwt.issuer and a template without {issuer}, the same subject from two of them gets one session_name (one Coze history). Start-up refuses that unless this is true: set it only if they all name the same people.',
        }),
        hmacSecret: optionalStr({
          env: 'SESSION_NAME_HMAC_SECRET',
          secret: true,
          description: 'If set, session_name = prefix + base64url(HMAC-SHA256(rendered)): no raw user id reaches Coze.',
        }),
      })
      .strict()
      .prefault({}),
    policy: z
      .object({
        enforceUserId: bool({
          env: 'ENFORCE_USER_ID',
          default: true,
          description: 'Force user_id, ext.user_id, connector_uid, uid and chat_config.user_id to the session_name.',
        }),
        allowedBotIds: optionalIdList({ env: 'ALLOWED_BOT_IDS', defaultText: 'any', description: 'Bots callers may use (comma list).' }),
        allowedWorkflowIds: optionalIdList({ env: 'ALLOWED_WORKFLOW_IDS', defaultText: 'any', description: 'Workflows callers may run (comma list).' }),
        allowedAppIds: optionalIdList({
          env: 'ALLOWED_APP_IDS',
          defaultText: 'any',
          description: 'Apps callers may use (comma list), checked as app_id in bodies and queries and as a WebSocket entity_id of entity_type app.',
        }),
        allowDrafts: bool({
          env: 'ALLOW_DRAFTS',
          default: false,
          description:
            'Let callers pick drafts and pinned versions. Off: publish_status other than published_online, bot_version, workflow_version, draft_mode: true and is_published=false get 403.',
        }),
        botInfo: oneOf(['display', 'full'] as const, {
          env: 'POLICY_BOT_INFO',
          default: 'display',
          description:
            'What GET /v1/bots/:bot_id and /v1/bot/get_online_info return: display keeps bot_id, name, description, icon_url, onboarding_info and voice_info_list; full passes the whole bot configuration (prompt, model, plugins, owner).',
        }),
        forwardHeaders: list({
          env: 'FORWARD_HEADERS',
          default: [],
          description:
            'Request headers to forward to Coze beyond the built-in allowlist (what the official SDKs send: docs/security.md). Credentials, cookies, hop-by-hop, forwarding and client-address headers cannot be added.',
        }),
        routes: leaf(z.array(routeEntry).min(1).optional(), {
          type: 'routes',
          defaultText: 'every endpoint of docs/routes.md',
          description:
            'Narrows the endpoints exposed (docs/routes.md): a list of built-in endpoint names, or {name, method, path} rules equal to a built-in endpoint (which then keeps its policy; the name is its label). A route the gateway knows no policy for needs passthrough: true, and may not overlap a built-in endpoint.',
        }),
        disabledRoutes: optionalList({
          env: 'POLICY_DISABLED_ROUTES',
          description: 'Built-in endpoint names to turn off (comma list), e.g. bot.retrieve,bot.online_info.',
        }),
      })
      .strict()
      .prefault({}),
    rateLimit: z
      .object({
        requestsPerMinute: int({
          env: 'RATE_LIMIT_RPM',
          default: 0,
          min: 0,
          description: 'Requests per minute per session_name; 0 turns it off. Over it: 429 with Retry-After.',
        }),
        maxConcurrentPerIdentity: int({
          env: 'RATE_LIMIT_MAX_CONCURRENT',
          default: 64,
          min: 0,
          description: 'Requests and WebSockets one session_name may have in flight at once on a replica; 0 turns it off. Over it: 429 with Retry-After.',
        }),
      })
      .strict()
      .prefault({}),
    budgets: z
      .object({
        tokensPerDay: int({
          env: 'BUDGET_TOKENS_PER_DAY',
          default: 0,
          min: 0,
          description: 'Coze tokens (input + output, as Coze reports them) per session_name per day; 0 turns it off. Over it: 429 budget-exceeded until the day ends.',
        }),
        tokensPerMonth: int({
          env: 'BUDGET_TOKENS_PER_MONTH',
          default: 0,
          min: 0,
          description: 'Coze tokens per session_name per calendar month; 0 turns it off.',
        }),
        requestsPerDay: int({
          env: 'BUDGET_REQUESTS_PER_DAY',
          default: 0,
          min: 0,
          description: 'Requests forwarded to Coze (HTTP requests and WebSocket connections) per session_name per day; 0 turns it off.',
        }),
        timeZone: str({
          env: 'BUDGET_TIME_ZONE',
          default: 'UTC',
          description: 'IANA time zone whose midnights start the days and months of the budgets, e.g. Asia/Shanghai or Europe/Berlin.',
        }),
        overridesFile: optionalStr({
          env: 'BUDGET_OVERRIDES_FILE',
          description:
            'YAML or JSON list of per-subject budgets, {subject, source?, tokensPerDay?, tokensPerMonth?, requestsPerDay?}, each applying to every session of its subject; reloaded when it changes (docs/usage-and-budgets.md).',
        }),
        syncIntervalMs: int({
          env: 'BUDGET_SYNC_INTERVAL_MS',
          default: 1000,
          min: 50,
          max: 60000,
          description: 'With Redis: how often each replica writes its counts to Redis and reads the others\'. The accuracy bound of the budgets across replicas grows with it (docs/usage-and-budgets.md).',
        }),
        followUp: z
          .object({
            enabled: bool({
              env: 'BUDGET_FOLLOW_UP_ENABLED',
              default: true,
              description:
                'Retrieve from Coze, with the session\'s token, a chat nobody followed to its end through the gateway (a stream:false chat never retrieved once ended, a chat stream dropped before conversation.chat.completed), so that its tokens are counted (docs/usage-and-budgets.md).',
            }),
            delayMs: int({
              env: 'BUDGET_FOLLOW_UP_DELAY_MS',
              default: 60000,
              min: 10,
              max: 3600000,
              description: 'How long after a chat was last seen running the gateway retrieves it itself; a chat still running is retried, backing off from this up to 5 minutes.',
            }),
            maxAgeMs: int({
              env: 'BUDGET_FOLLOW_UP_MAX_AGE_MS',
              default: 1800000,
              min: 10,
              max: 86400000,
              description: 'A chat still running (or waiting for tool outputs) this long after it was first seen is given up (one waiting for tool outputs is counted with what it spent so far).',
            }),
            maxPending: int({
              env: 'BUDGET_FOLLOW_UP_MAX_PENDING',
              default: 10000,
              min: 1,
              description: 'Chats waiting for a follow-up per replica at most; beyond it the oldest is dropped (coze_gateway_usage_follow_ups_total{outcome="evicted"}).',
            }),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    tokenVending: z
      .object({
        enabled: bool({
          env: 'TOKEN_VENDING_ENABLED',
          default: false,
          description:
            'Serve POST /gateway/token: the caller\'s own Coze token, for the Web Chat SDK\'s onRefreshToken. The browser then holds a Coze token the route allowlist does not cover: keep coze.tokenTtlSeconds short.',
        }),
        permissionList: optionalList({
          env: 'TOKEN_VENDING_PERMISSIONS',
          defaultText: 'coze.scope.permissionList',
          description:
            'With coze.scope.enabled: the permission points of vended tokens, narrower than those of proxied tokens (a subset of coze.scope.permissionList). Vended tokens always carry the scope, bots included.',
        }),
      })
      .strict()
      .prefault({}),
    cors: z
      .object({
        allowedOrigins: optionalList({
          env: 'CORS_ALLOWED_ORIGINS',
          description: 'Origins allowed to call the gateway from a browser (comma list). "*" is refused, because every route carries credentials.',
        }),
      })
      .strict()
      .prefault({}),
    cache: z
      .object({
        redisUrl: leaf(
          z
            .string()
            .refine((v) => {
              try {
                return ['redis:', 'rediss:'].includes(new URL(v).protocol);
              } catch {
                return false;
              }
            }, 'expected a redis:// or rediss:// URL')
            .optional(),
          {
            env: 'REDIS_URL',
            type: 'url',
            secret: true,
            description:
              'Share tokens, mints and rate limits across replicas through one Redis node: redis://[user:password@]host:6379[/db], or rediss:// for TLS. Or use cache.redisSentinels or cache.redisClusterNodes (set exactly one of the three). Needs cache.encryptionKey. When Redis is down the gateway falls back to memory and keeps serving.',
          },
        ),
        redisSentinels: optionalList({
          env: 'REDIS_SENTINELS',
          description: 'Redis Sentinel: the Sentinels as host:port (a comma list in the environment), e.g. redis-node-0.redis-headless:26379. The gateway asks them for the master and follows a failover by itself. Needs cache.redisSentinelName.',
        }),
        redisSentinelName: optionalStr({
          env: 'REDIS_SENTINEL_NAME',
          description: 'The master name the Sentinels monitor (`sentinel monitor NAME ...`; `mymaster` in the Bitnami chart).',
        }),
        redisSentinelUsername: optionalStr({
          env: 'REDIS_SENTINEL_USERNAME',
          description: 'ACL user for the Sentinels themselves, when they require one (Redis 6.2+ Sentinels).',
        }),
        redisSentinelPassword: optionalStr({
          env: 'REDIS_SENTINEL_PASSWORD',
          secret: true,
          description: 'Password of the Sentinels themselves (their requirepass), when set. The data nodes\' password is cache.redisPassword.',
        }),
        redisClusterNodes: optionalList({
          env: 'REDIS_CLUSTER_NODES',
          description: 'Redis Cluster: some of its nodes as host:port (a comma list in the environment); the others are discovered. Each session\'s keys share one hash slot.',
        }),
        redisUsername: optionalStr({
          env: 'REDIS_USERNAME',
          description: 'ACL user on the Redis data nodes, for every topology (docs/deployment.md lists the commands it needs). With cache.redisUrl it may be in the URL instead.',
        }),
        redisPassword: optionalStr({
          env: 'REDIS_PASSWORD',
          secret: true,
          description: 'Password on the Redis data nodes (of cache.redisUsername, or requirepass), for every topology. With cache.redisUrl it may be in the URL instead.',
        }),
        redisTls: bool({
          env: 'REDIS_TLS',
          default: false,
          description: 'TLS to the Sentinels and data nodes (cache.redisSentinels) or to the cluster nodes (cache.redisClusterNodes), verified against the system CAs or cache.redisTlsCaFile. With cache.redisUrl, use rediss:// instead.',
        }),
        redisTlsCaFile: optionalStr({
          env: 'REDIS_TLS_CA_FILE',
          description: 'PEM file of the CA that signed the Redis certificates (a private CA), used instead of the system CAs. Needs TLS: rediss:// or cache.redisTls.',
        }),
        encryptionKey: optionalStr({
          env: 'CACHE_ENCRYPTION_KEY',
          secret: true,
          description: 'AES-256-GCM key for tokens at rest in Redis: 32 bytes as 64 hex characters or base64. Generate one with `openssl rand -base64 32`.',
        }),
        previousEncryptionKeys: optionalStr({
          env: 'CACHE_PREVIOUS_ENCRYPTION_KEYS',
          secret: true,
          description: 'Older keys (comma list) that may still decrypt tokens written before a rotation; new tokens always use cache.encryptionKey.',
        }),
        keyPrefix: str({ env: 'CACHE_KEY_PREFIX', default: 'csg', description: 'Prefix of every Redis key; keys are further namespaced by Coze app id and base URL.' }),
        commandTimeoutMs: int({
          env: 'CACHE_COMMAND_TIMEOUT_MS',
          default: 250,
          min: 10,
          max: 10000,
          description: 'A Redis command slower than this counts as a failure: the rate limit falls back to this replica\'s own bucket for that request, and a step of a token mint is retried. A mint goes ahead without Redis when Redis is disconnected, refuses the command with an error reply that no failover ends (NOPERM, OOM), or has answered nothing for 4 times this (at least 1 s, at most half of coze.mintDeadlineSeconds).',
        }),
        lockTtlSeconds: int({
          env: 'CACHE_LOCK_TTL_SECONDS',
          default: 10,
          min: 2,
          max: 300,
          description: 'Lifetime of the cross-replica mint lock; the holder renews it every third of this while its mint runs.',
        }),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: oneOf(LOG_LEVELS, { env: 'LOG_LEVEL', default: 'info', description: 'Log level.' }),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type ConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;

/** One leaf of the schema, as listed in the docs and used by the loader. */
export interface SettingInfo extends SettingMeta {
  key: string;
  fileKey?: string;
  fileEnv?: string;
}

/** Walks the schema once and lists every setting (objects are containers, everything else a leaf). */
export function listSettings(schema: z.ZodType = configSchema): SettingInfo[] {
  const out: SettingInfo[] = [];
  const visit = (node: z.ZodType, path: string[]): void => {
    const meta = node.meta() as SettingMeta | undefined;
    if (meta?.type) {
      const key = path.join('.');
      const info: SettingInfo = { key, ...meta };
      if (meta.secret) {
        info.fileKey = `${key}File`;
        if (meta.env) info.fileEnv = `${meta.env}_FILE`;
      }
      out.push(info);
      return;
    }
    const shape = objectShape(node);
    if (!shape) throw new TypeError(`config schema node at "${path.join('.')}" has no setting metadata`);
    for (const [name, child] of Object.entries(shape)) visit(child as z.ZodType, [...path, name]);
  };
  visit(schema, []);
  return out;
}

function objectShape(node: z.ZodType): Record<string, z.ZodType> | undefined {
  let current: z.ZodType = node;
  // Unwrap prefault/default/optional wrappers around section objects.
  for (let i = 0; i < 5; i++) {
    if (current instanceof z.ZodObject) return current.shape as Record<string, z.ZodType>;
    const def = (current as unknown as { _zod: { def: { innerType?: z.ZodType } } })._zod.def;
    if (!def.innerType) return undefined;
    current = def.innerType;
  }
  return undefined;
}
