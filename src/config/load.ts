import { createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { loadApiKeyFile } from '../auth/api-key-source.js';
import { configuredTopology } from '../cache/redis-topology.js';
import { maxRefreshBeforeSeconds } from '../coze/token-cache.js';
import { forwardHeaderProblem } from '../http/headers.js';
import { isValidCidr } from '../http/client-ip.js';
import { selectEndpoints } from '../policy/route-table.js';
import { createSessionNamer } from '../session/session-name.js';
import { parseOverrides } from '../usage/budget-overrides.js';
import { checkRedisSettings } from './redis-checks.js';
import { configSchema, listSettings, type ParsedConfig, type SettingInfo } from './schema.js';

/** One bad setting, named both ways so the operator finds it whichever way they set it. */
export interface ConfigIssue {
  key: string;
  env?: string;
  message: string;
}

/** A misconfiguration. main.ts prints it and exits 2; nothing else catches it. */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(`invalid configuration:\n${issues.map((i) => `  - ${formatIssue(i)}`).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export function formatIssue(issue: ConfigIssue): string {
  const name = issue.env ? `${issue.key} (${issue.env})` : issue.key;
  return `${name}: ${issue.message}`;
}

/** The validated config plus what is derived from it at load time. Deeply frozen. */
export type GatewayConfig = ParsedConfig & {
  coze: ParsedConfig['coze'] & {
    appId: string;
    keyId: string;
    privateKey: string;
    audience: string;
    wsBaseUrl: string;
  };
};

export interface LoadOptions {
  /** Flags: `--config FILE`, `--<yaml.key>=value` or `--<yaml.key> value`. */
  flags?: Record<string, string>;
  env?: Record<string, string | undefined>;
  /** Path of config/default.yaml; defaults to the one shipped with the package. */
  defaultsFile?: string;
  /** Skip the checks that only `serve` needs (an identity source). */
  requireIdentity?: boolean;
}

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULTS_FILE = resolve(PACKAGE_ROOT, 'config', 'default.yaml');

type Tree = Record<string, unknown>;

export function loadConfig(options: LoadOptions = {}): GatewayConfig {
  const settings = listSettings();
  const issues: ConfigIssue[] = [];
  const merged = mergeLayers(options, settings, issues);
  resolveSecretFiles(settings, merged, issues);

  // Required settings and the key are checked on the raw values, so that they are reported
  // together with schema errors rather than one start-up later.
  for (const key of ['appId', 'keyId', 'privateKey'] as const) {
    // A *_FILE that could not be read is reported as such, not again as a missing setting.
    if (getPath(merged, `coze.${key}`) === undefined && !issues.some((i) => i.key === `coze.${key}File`)) {
      issues.push(issueFor(settings, `coze.${key}`, key === 'privateKey' ? 'required (set coze.privateKey or coze.privateKeyFile)' : 'required'));
    }
  }
  const rawKey = getPath(merged, 'coze.privateKey');
  const keyProblem = typeof rawKey === 'string' ? checkRsaPrivateKey(rawKey) : undefined;
  if (keyProblem) issues.push(issueFor(settings, 'coze.privateKey', keyProblem));

  const parsed = configSchema.safeParse(merged);
  let config: ParsedConfig | undefined;
  if (parsed.success) config = parsed.data;
  else {
    issues.push(...zodIssues(parsed.error, settings));
    // The cross-setting checks still run, on the settings that did parse (the bad ones take
    // their defaults), so that one start-up names every bad setting (issue 16).
    config = parseWithout(merged, parsed.error);
  }
  const derived = config ? derive(config, settings, issues, options.requireIdentity ?? true) : undefined;
  if (issues.length > 0 || !derived) throw new ConfigError(issues);
  return deepFreeze(derived);
}

/** defaults < --config FILE (or GATEWAY_CONFIG) < environment < flags, as one tree of raw values. */
function mergeLayers(options: LoadOptions, settings: SettingInfo[], issues: ConfigIssue[]): Tree {
  const env = options.env ?? process.env;
  const flags = { ...(options.flags ?? {}) };
  const configFile = flags.config ?? env.GATEWAY_CONFIG;
  delete flags.config;

  const layers: Tree[] = [readYaml(options.defaultsFile ?? DEFAULTS_FILE, 'config/default.yaml', issues)];
  if (configFile) layers.push(readYaml(configFile, configFile, issues));
  layers.push(fromEnv(settings, env));
  layers.push(fromFlags(settings, flags, issues));

  const merged: Tree = {};
  for (const layer of layers) deepMerge(merged, layer);
  return merged;
}

/**
 * Only the admin listener's address, through the same layers as loadConfig: for `healthcheck`,
 * which runs every few seconds beside a running gateway and must neither read its secrets nor
 * turn unhealthy over a setting the gateway reloads (the API key file).
 */
export function loadAdminAddress(options: LoadOptions = {}): ParsedConfig['admin'] {
  const settings = listSettings();
  const issues: ConfigIssue[] = [];
  const merged = mergeLayers(options, settings, issues);
  const parsed = configSchema.pick({ admin: true }).safeParse({ admin: merged.admin });
  if (parsed.success && issues.length === 0) return parsed.data.admin;
  if (!parsed.success) issues.push(...zodIssues(parsed.error, settings));
  throw new ConfigError(issues);
}

/** The config with every setting zod refused left out, or undefined if it still fails. */
function parseWithout(merged: Tree, error: z.ZodError): ParsedConfig | undefined {
  const tree = structuredClone(merged);
  for (const issue of error.issues) {
    const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol').map(String);
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) deletePath(tree, [...path, k].join('.'));
      continue;
    }
    // An array item's problem drops the whole array (policy.routes[2].name drops policy.routes).
    const arrayAt = path.findIndex((p) => /^\d+$/.test(p));
    deletePath(tree, (arrayAt === -1 ? path : path.slice(0, arrayAt)).join('.'));
  }
  const again = configSchema.safeParse(tree);
  return again.success ? again.data : undefined;
}

/**
 * Integers as numbers, except those a number would round (past 2^53: a 19-digit Coze bot id),
 * which stay their digits: a text setting takes them as they were written, and a numeric one
 * refuses them by its own bounds.
 */
function exactIntegers(value: unknown): unknown {
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (Array.isArray(value)) return value.map(exactIntegers);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, exactIntegers(v)]));
  return value;
}

function readYaml(path: string, label: string, issues: ConfigIssue[]): Tree {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    issues.push({ key: 'config', env: 'GATEWAY_CONFIG', message: `cannot read ${label}: ${(err as NodeJS.ErrnoException).code ?? 'error'}` });
    return {};
  }
  try {
    const value: unknown = exactIntegers(parseYaml(text, { intAsBigInt: true }));
    if (value === null || value === undefined) return {};
    if (typeof value !== 'object' || Array.isArray(value)) {
      issues.push({ key: 'config', env: 'GATEWAY_CONFIG', message: `${label} must hold a YAML mapping` });
      return {};
    }
    return value as Tree;
  } catch (err) {
    issues.push({ key: 'config', env: 'GATEWAY_CONFIG', message: `${label} is not valid YAML: ${(err as Error).message.split('\n')[0]}` });
    return {};
  }
}

function fromEnv(settings: SettingInfo[], env: Record<string, string | undefined>): Tree {
  const tree: Tree = {};
  for (const s of settings) {
    const value = s.env ? env[s.env] : undefined;
    if (value !== undefined && value !== '') setPath(tree, s.key, value);
    const fileValue = s.fileEnv ? env[s.fileEnv] : undefined;
    if (s.fileKey && fileValue !== undefined && fileValue !== '') setPath(tree, s.fileKey, fileValue);
  }
  return tree;
}

const FLAG_ALIASES: Record<string, string> = {
  port: 'server.port',
  host: 'server.host',
  'admin-port': 'admin.port',
  'log-level': 'log.level',
};

function fromFlags(settings: SettingInfo[], flags: Record<string, string>, issues: ConfigIssue[]): Tree {
  const tree: Tree = {};
  const known = new Set(settings.flatMap((s) => (s.fileKey ? [s.key, s.fileKey] : [s.key])));
  for (const [rawName, value] of Object.entries(flags)) {
    const name = FLAG_ALIASES[rawName] ?? rawName;
    if (!known.has(name)) {
      issues.push({ key: `--${rawName}`, message: 'unknown flag; flags are --config FILE or --<yaml.key>=VALUE (see --help)' });
      continue;
    }
    setPath(tree, name, value);
  }
  return tree;
}

/** `<key>File` becomes the file's contents under `<key>`: Kubernetes mounts secrets as files. */
function resolveSecretFiles(settings: SettingInfo[], tree: Tree, issues: ConfigIssue[]): void {
  for (const s of settings) {
    if (!s.fileKey) continue;
    const path = getPath(tree, s.fileKey);
    if (path === undefined) continue;
    deletePath(tree, s.fileKey);
    const fileIssue = { key: s.fileKey, ...(s.fileEnv ? { env: s.fileEnv } : {}) };
    if (getPath(tree, s.key) !== undefined) {
      issues.push({ ...fileIssue, message: `set either ${s.key} or ${s.fileKey}, not both` });
      continue;
    }
    if (typeof path !== 'string' || path === '') {
      issues.push({ ...fileIssue, message: 'expected a file path' });
      continue;
    }
    try {
      setPath(tree, s.key, readFileSync(path, 'utf8').trim());
    } catch (err) {
      issues.push({ ...fileIssue, message: `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})` });
    }
  }
}

function zodIssues(error: z.ZodError, settings: SettingInfo[]): ConfigIssue[] {
  const byKey = new Map(settings.map((s) => [s.key, s]));
  const out: ConfigIssue[] = [];
  for (const issue of error.issues) {
    const base = issue.path.filter((p) => typeof p === 'string').join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) out.push({ key: base ? `${base}.${k}` : k, message: 'unknown setting' });
      continue;
    }
    // Array items (policy.routes[2].name) keep their index in the message, not in the key.
    const leafKey = settings.find((s) => base === s.key || base.startsWith(`${s.key}.`))?.key ?? base;
    const setting = byKey.get(leafKey);
    const where = issue.path.length > leafKey.split('.').length ? ` (at ${issue.path.join('.')})` : '';
    const message = setting?.secret ? `${secretSafe(issue.message)}${where}` : `${issue.message}${where}`;
    out.push({ key: leafKey, ...(setting?.env ? { env: setting.env } : {}), message });
  }
  return out;
}

/** zod messages never echo input values today; this keeps it so for secrets if that changes. */
function secretSafe(message: string): string {
  return message.replace(/received .*/i, 'received an invalid value');
}

/** An issue about one setting, named by YAML key and environment variable, for checks outside the loader. */
export function settingIssue(key: string, message: string): ConfigIssue {
  return issueFor(listSettings(), key, message);
}

function issueFor(settings: SettingInfo[], key: string, message: string): ConfigIssue {
  const s = settings.find((x) => x.key === key);
  return { key, ...(s?.env ? { env: s.env } : {}), message };
}

/** Two listeners on one port clash when their hosts do: the same address, or a wildcard on either side. */
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);
const hostsOverlap = (a: string, b: string) => a === b || WILDCARD_HOSTS.has(a) || WILDCARD_HOSTS.has(b);

function derive(config: ParsedConfig, settings: SettingInfo[], issues: ConfigIssue[], requireIdentity: boolean): GatewayConfig | undefined {
  const { coze, server, admin } = config;
  // Port 0 picks a free port for each listener: they never clash.
  if (server.port !== 0 && server.port === admin.port && hostsOverlap(server.host, admin.host)) {
    issues.push(issueFor(settings, 'admin.port', `is server.port too (${server.port}): the API and the admin endpoints need a port each`));
  }
  // Node's http.createServer throws on it (`The value of "headersTimeout" is out of range`), which
  // crashed serve with no setting named while check-config called the configuration valid.
  if (server.requestTimeoutSeconds !== 0 && server.requestTimeoutSeconds < server.headersTimeoutSeconds) {
    issues.push(
      issueFor(
        settings,
        'server.requestTimeoutSeconds',
        `(${server.requestTimeoutSeconds}) is below server.headersTimeoutSeconds (${server.headersTimeoutSeconds}): a whole request cannot have less time than its headers. Raise it to at least ${server.headersTimeoutSeconds}, set it to 0 for no deadline, or lower server.headersTimeoutSeconds`,
      ),
    );
  }
  const maxRefreshBefore = maxRefreshBeforeSeconds(coze.tokenTtlSeconds);
  if (coze.refreshBeforeSeconds > maxRefreshBefore) {
    issues.push(
      issueFor(
        settings,
        'coze.refreshBeforeSeconds',
        `is too close to coze.tokenTtlSeconds: a fresh token would be stale at once (see its description); at most ${maxRefreshBefore} for coze.tokenTtlSeconds ${coze.tokenTtlSeconds}`,
      ),
    );
  }

  const jwt = config.identity.jwt;
  const jwtKeys = [jwt.jwksUrl, jwt.publicKey, jwt.secret].filter((v) => v !== undefined).length;
  if (jwtKeys > 1) {
    issues.push(issueFor(settings, 'identity.jwt.jwksUrl', 'set only one of identity.jwt.jwksUrl, identity.jwt.publicKey and identity.jwt.secret'));
  }
  if (jwt.publicKey && !parsePublicKey(jwt.publicKey)) {
    issues.push(issueFor(settings, 'identity.jwt.publicKey', 'expected a PEM public key (SPKI) or a public JWK as JSON'));
  }
  if (jwt.secret && Buffer.byteLength(jwt.secret) < 32) {
    issues.push(issueFor(settings, 'identity.jwt.secret', 'must be at least 32 bytes'));
  }
  if (jwt.algorithms?.some((a) => a.toLowerCase() === 'none')) {
    issues.push(issueFor(settings, 'identity.jwt.algorithms', '"none" is never accepted'));
  }
  if (jwt.secret && jwt.algorithms?.some((a) => !a.startsWith('HS'))) {
    issues.push(issueFor(settings, 'identity.jwt.algorithms', 'an HMAC secret only verifies HS256, HS384 or HS512'));
  }
  if ((jwt.publicKey || jwt.jwksUrl) && jwt.algorithms?.some((a) => a.startsWith('HS'))) {
    issues.push(issueFor(settings, 'identity.jwt.algorithms', 'HS algorithms cannot be used with a public key or JWKS (key confusion)'));
  }
  if (jwtKeys > 0) checkJwtClaims(jwt, settings, issues);
  if (config.identity.apiKeys.file) {
    try {
      loadApiKeyFile(config.identity.apiKeys.file);
    } catch (err) {
      issues.push(issueFor(settings, 'identity.apiKeys.file', (err as Error).message));
    }
  }
  // Not said when an identity setting was given but refused: that issue is already listed.
  const identityRefused = issues.some((i) => i.key.startsWith('identity.'));
  if (requireIdentity && !identityRefused && jwtKeys === 0 && !config.identity.apiKeys.file && !config.identity.trustedHeader.name) {
    const sources = ['identity.jwt.jwksUrl', 'identity.jwt.publicKey', 'identity.jwt.secret', 'identity.apiKeys.file', 'identity.trustedHeader.name'].map((key) => {
      const s = settings.find((x) => x.key === key);
      return `${key} (${[s?.env, s?.fileEnv].filter(Boolean).join(' or ')})`;
    });
    issues.push({ key: 'identity', message: `configure at least one identity source: ${sources.join(', ')}` });
  }
  if (config.cors.allowedOrigins?.includes('*')) {
    issues.push(issueFor(settings, 'cors.allowedOrigins', '"*" is refused: every gateway route carries credentials; list the origins'));
  }
  for (const cidr of config.identity.trustedHeader.allowFrom) {
    if (!isValidCidr(cidr)) issues.push(issueFor(settings, 'identity.trustedHeader.allowFrom', `"${cidr}" is not a CIDR such as 10.0.0.0/8`));
  }
  try {
    createSessionNamer({ template: config.session.template, prefix: config.session.prefix });
  } catch (err) {
    issues.push(issueFor(settings, 'session.template', (err as Error).message.replace(/^session\.template: /, '')));
  }
  // Only once the identity settings are sound: which sources exist is not known before.
  if (!issues.some((i) => i.key.startsWith('identity.'))) {
    checkNamespaces(config, settings, issues);
    checkClaimTemplates(config, settings, issues);
  }
  if (config.session.hmacSecret && Buffer.byteLength(config.session.hmacSecret) < 32) {
    issues.push(issueFor(settings, 'session.hmacSecret', 'must be at least 32 bytes'));
  }
  checkCozeHooks(config, settings, issues);
  if (!isTimeZone(config.budgets.timeZone)) {
    issues.push(issueFor(settings, 'budgets.timeZone', `"${config.budgets.timeZone}" is not an IANA time zone name such as UTC, Asia/Shanghai or Europe/Berlin`));
  }
  const overridesFile = config.budgets.overridesFile;
  if (overridesFile !== undefined) {
    // Checked here too, so check-config reports a bad file; the gateway reads it again when it starts.
    try {
      parseOverrides(readFileSync(overridesFile, 'utf8'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      issues.push(issueFor(settings, 'budgets.overridesFile', code ? `cannot read ${overridesFile} (${code})` : `${overridesFile}: ${(err as Error).message}`));
    }
  }
  for (const problem of selectEndpoints(config.policy.routes, config.policy.disabledRoutes).problems) {
    const entry = /^policy\.routes\[(\d+)\]: (.*)$/s.exec(problem);
    if (entry) issues.push(issueFor(settings, 'policy.routes', `${entry[2]} (at policy.routes.${entry[1]})`));
    else if (problem.startsWith('policy.disabledRoutes: ')) issues.push(issueFor(settings, 'policy.disabledRoutes', problem.slice('policy.disabledRoutes: '.length)));
    else issues.push(issueFor(settings, 'policy.routes', problem));
  }
  for (const name of config.policy.forwardHeaders) {
    const problem = forwardHeaderProblem(name, config.identity.trustedHeader.name);
    if (problem) issues.push(issueFor(settings, 'policy.forwardHeaders', problem));
  }
  if (config.server.bufferedBodyBudgetBytes < config.server.maxBodyBytes) {
    issues.push(issueFor(settings, 'server.bufferedBodyBudgetBytes', `must be at least server.maxBodyBytes (${config.server.maxBodyBytes}), or a body the gateway accepts could never be read`));
  }
  const cache = config.cache;
  for (const problem of checkRedisSettings(cache)) issues.push(issueFor(settings, problem.key, problem.message));
  if (configuredTopology(cache) && !cache.encryptionKey) {
    issues.push(issueFor(settings, 'cache.encryptionKey', 'is required when Redis is configured (cache.redisUrl, cache.redisSentinels or cache.redisClusterNodes): tokens are encrypted at rest'));
  }
  if (cache.encryptionKey && !parseEncryptionKey(cache.encryptionKey)) {
    issues.push(issueFor(settings, 'cache.encryptionKey', 'expected 32 bytes as 64 hex characters or base64 (openssl rand -base64 32)'));
  }
  for (const key of splitKeys(cache.previousEncryptionKeys)) {
    if (!parseEncryptionKey(key)) issues.push(issueFor(settings, 'cache.previousEncryptionKeys', 'each key must be 32 bytes as 64 hex characters or base64'));
  }
  if (issues.length > 0) return undefined;

  const baseHost = new URL(coze.baseUrl).host;
  return {
    ...config,
    coze: {
      ...coze,
      appId: coze.appId as string,
      keyId: coze.keyId as string,
      privateKey: coze.privateKey as string,
      audience: coze.audience ?? baseHost,
      wsBaseUrl: coze.wsBaseUrl ?? deriveWsBaseUrl(coze.baseUrl),
    },
  };
}

/** custom_consumer and the channel scope (issue 18): refused at start-up rather than by Coze at the first mint. */
function checkCozeHooks(config: ParsedConfig, settings: SettingInfo[], issues: ConfigIssue[]): void {
  const { sessionContext, scope } = config.coze;
  if (sessionContext.customConsumer !== undefined) {
    try {
      createSessionNamer({ template: sessionContext.customConsumer, prefix: '', setting: 'coze.sessionContext.customConsumer' });
    } catch (err) {
      issues.push(issueFor(settings, 'coze.sessionContext.customConsumer', (err as Error).message.replace(/^coze\.sessionContext\.customConsumer: /, '')));
    }
  }
  if (sessionContext.customConsumerHmacSecret !== undefined) {
    if (sessionContext.customConsumer === undefined) issues.push(issueFor(settings, 'coze.sessionContext.customConsumerHmacSecret', 'needs coze.sessionContext.customConsumer (the template it hashes)'));
    if (Buffer.byteLength(sessionContext.customConsumerHmacSecret) < 32) issues.push(issueFor(settings, 'coze.sessionContext.customConsumerHmacSecret', 'must be at least 32 bytes'));
  }
  const allowed = config.policy.allowedBotIds?.length ? new Set(config.policy.allowedBotIds) : undefined;
  const vending = config.tokenVending.permissionList;
  if (!scope.enabled) {
    if (vending !== undefined) issues.push(issueFor(settings, 'tokenVending.permissionList', 'narrows the scope of vended tokens: it needs coze.scope.enabled'));
    return;
  }
  const bots = scope.botIdList ?? config.policy.allowedBotIds ?? [];
  if (bots.length === 0) issues.push(issueFor(settings, 'coze.scope.botIdList', 'a scope names the bots its tokens may chat with: set coze.scope.botIdList or policy.allowedBotIds'));
  const outside = allowed ? bots.filter((id) => !allowed.has(id)) : [];
  if (outside.length > 0) issues.push(issueFor(settings, 'coze.scope.botIdList', `names bots policy.allowedBotIds does not allow: ${outside.join(', ')}`));
  if (scope.permissionList.length === 0) issues.push(issueFor(settings, 'coze.scope.permissionList', 'must name at least one permission point, e.g. Connector.botChat'));
  const broader = (vending ?? []).filter((p) => !scope.permissionList.includes(p));
  if (broader.length > 0) issues.push(issueFor(settings, 'tokenVending.permissionList', `vended tokens are never broader than proxied ones; not in coze.scope.permissionList: ${broader.join(', ')}`));
  if (vending !== undefined && vending.length === 0) issues.push(issueFor(settings, 'tokenVending.permissionList', 'must name at least one permission point'));
}

/**
 * SPEC section 3.1 enforces iss and aud, but left unset they were not checked at all: a token
 * the same key signed for another application or another tenant got in. So a JWT source needs
 * both. An identity provider that sets no aud has one way out, explicit and warned about at
 * every start-up (configWarnings).
 */
function checkJwtClaims(jwt: ParsedConfig['identity']['jwt'], settings: SettingInfo[], issues: ConfigIssue[]): void {
  if (!jwt.issuer?.length) {
    issues.push(
      issueFor(
        settings,
        'identity.jwt.issuer',
        'required with a JWT source: the iss of the tokens meant for this gateway, e.g. https://idp.example.com (a comma list for several). Unset, a token from any issuer whose signature verifies would be accepted',
      ),
    );
  }
  if (jwt.audience?.length && jwt.allowMissingAudience) {
    issues.push(issueFor(settings, 'identity.jwt.allowMissingAudience', 'set either identity.jwt.audience or identity.jwt.allowMissingAudience, not both: with an audience, a token without aud is refused'));
  } else if (!jwt.audience?.length && !jwt.allowMissingAudience) {
    const optOut = settings.find((s) => s.key === 'identity.jwt.allowMissingAudience');
    issues.push(
      issueFor(
        settings,
        'identity.jwt.audience',
        'required with a JWT source: the aud your identity provider puts in the tokens meant for this gateway, e.g. its client id or API identifier (a comma list for several). Unset, a token it issued for any other application would be accepted. ' +
          `For an identity provider that sets no aud at all, set identity.jwt.allowMissingAudience (${optOut?.env ?? 'IDENTITY_JWT_ALLOW_MISSING_AUDIENCE'}) to true instead`,
      ),
    );
  }
}

/** Settings that are allowed but weaken a defence: `serve` logs them and check-config prints them, at every start. */
export function configWarnings(config: GatewayConfig): string[] {
  const { jwt } = config.identity;
  const warnings: string[] = [];
  if ((jwt.jwksUrl || jwt.publicKey || jwt.secret) && jwt.allowMissingAudience) {
    warnings.push(
      'identity.jwt.allowMissingAudience (IDENTITY_JWT_ALLOW_MISSING_AUDIENCE) is true: JWTs without an aud claim are accepted, so a token your identity provider issued for another application gets in when it carries no aud either. ' +
        'Set identity.jwt.audience once your identity provider can put one in its tokens.',
    );
  }
  return warnings;
}

/** True for a time zone name Intl knows (IANA names and UTC). */
export function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/**
 * Several identity sources share one namespace of subjects unless the session name carries the
 * source: JWT subject "alice" and API key subject "alice" would get one session_name, so one
 * Coze history (issue 15, finding 11). Several accepted issuers are the same ambiguity inside
 * the JWT source: sub "admin" of tenant A and of tenant B. Start-up refuses either unless the
 * operator says the subjects all name the same people (session.sharedNamespace).
 */
/**
 * Only a JWT carries claims: an API-key or trusted-header caller has none, so a template naming
 * `{claims.NAME}` would refuse every such caller with 400 (session-name.ts takes no missing claim).
 */
function checkClaimTemplates(config: ParsedConfig, settings: SettingInfo[], issues: ConfigIssue[]): void {
  const { identity } = config;
  const claimless = [identity.apiKeys.file ? 'api_key' : undefined, identity.trustedHeader.name ? 'trusted_header' : undefined].filter((s): s is string => s !== undefined);
  if (claimless.length === 0) return;
  const templates: Array<[string, string | undefined]> = [
    ['session.template', config.session.template],
    ['coze.sessionContext.customConsumer', config.coze.sessionContext.customConsumer],
  ];
  for (const [key, template] of templates) {
    const claim = template?.match(/\{claims\.[^}]*\}/)?.[0];
    // A template already refused is reported once.
    if (claim && !issues.some((i) => i.key === key)) {
      issues.push(issueFor(settings, key, `names ${claim}, but only JWT callers carry claims: every ${claimless.join(' and ')} caller would be refused with 400. Take the claim out, or configure only the JWT source`));
    }
  }
}

function checkNamespaces(config: ParsedConfig, settings: SettingInfo[], issues: ConfigIssue[]): void {
  const { identity, session } = config;
  if (session.sharedNamespace) return;
  const envOf = (key: string, fallback: string) => settings.find((s) => s.key === key)?.env ?? fallback;
  const sharedNamespace = `session.sharedNamespace (${envOf('session.sharedNamespace', 'SESSION_SHARED_NAMESPACE')})`;
  const sources = [
    identity.trustedHeader.name ? 'trusted_header' : undefined,
    identity.jwt.jwksUrl || identity.jwt.publicKey || identity.jwt.secret ? 'jwt' : undefined,
    identity.apiKeys.file ? 'api_key' : undefined,
  ].filter((s): s is string => s !== undefined);
  if (sources.length > 1 && !session.template.includes('{source}')) {
    issues.push(
      issueFor(
        settings,
        'session.template',
        `several identity sources are configured (${sources.join(', ')}) and "${session.template}" does not hold {source}, so the same subject from two sources would get one session_name and share one Coze history. ` +
          `Either put {source} in the template (e.g. "{source}:{subject}"; existing users' histories then move to new session names), ` +
          `or set ${sharedNamespace} to true if every source names the same people.`,
      ),
    );
  }
  const issuers = [...new Set(identity.jwt.issuer ?? [])];
  if (sources.includes('jwt') && issuers.length > 1 && !session.template.includes('{issuer}')) {
    // "|" cannot occur in an issuer URL, so no subject of one issuer can spell another issuer's name.
    issues.push(
      issueFor(
        settings,
        'session.template',
        `identity.jwt.issuer (${envOf('identity.jwt.issuer', 'IDENTITY_JWT_ISSUER')}) accepts several issuers (${issuers.join(', ')}) and "${session.template}" does not hold {issuer}, so the same subject from two issuers would get one session_name and share one Coze history. ` +
          `Either put {issuer} in the template (e.g. "{issuer}|{subject}"; existing users' histories then move to new session names), ` +
          `or set ${sharedNamespace} to true if every issuer names the same people (or a claim in the template tells them apart).`,
      ),
    );
  }
}

/** api.coze.cn -> ws.coze.cn, api.coze.com -> ws.coze.com (Coze's realtime docs: https://www.coze.cn/open/docs/developer_guides/streaming_chat_api). */
export function deriveWsBaseUrl(baseUrl: string): string {
  const url = new URL(baseUrl);
  url.protocol = url.protocol === 'http:' ? 'ws:' : 'wss:';
  if (url.hostname.startsWith('api.')) url.hostname = `ws.${url.hostname.slice(4)}`;
  else if (url.hostname.startsWith('api-')) url.hostname = `ws-${url.hostname.slice(4)}`;
  return url.origin.replace(/^http/, 'ws');
}

/** Returns a problem description, or undefined when the PEM is a usable RSA private key. */
export function checkRsaPrivateKey(pem: string): string | undefined {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    return 'not a PEM private key (expected "-----BEGIN PRIVATE KEY-----" or "-----BEGIN RSA PRIVATE KEY-----")';
  }
  if (key.asymmetricKeyType !== 'rsa') return `expected an RSA key for RS256, got ${key.asymmetricKeyType ?? 'unknown'}`;
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048) return `the RSA key has ${bits} bits; Coze keys have at least 2048`;
  return undefined;
}

export function parsePublicKey(text: string): KeyObject | undefined {
  try {
    const trimmed = text.trim();
    if (trimmed.startsWith('{')) return createPublicKey({ key: JSON.parse(trimmed) as JsonWebKey, format: 'jwk' });
    return createPublicKey({ key: trimmed, format: 'pem' });
  } catch {
    return undefined;
  }
}

function setPath(tree: Tree, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = tree;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[part] = {};
    node = node[part] as Tree;
  }
  node[parts[parts.length - 1] as string] = value;
}

function getPath(tree: Tree, key: string): unknown {
  let node: unknown = tree;
  for (const part of key.split('.')) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Tree)[part];
  }
  return node;
}

function deletePath(tree: Tree, key: string): void {
  const parts = key.split('.');
  const parent = getPath(tree, parts.slice(0, -1).join('.'));
  if (typeof parent === 'object' && parent !== null) delete (parent as Tree)[parts[parts.length - 1] as string];
}

function deepMerge(target: Tree, source: Tree): void {
  for (const [k, v] of Object.entries(source)) {
    // An empty YAML key (`cors:`) parses as null: it means "not set", not "set to null".
    if (v === null) continue;
    const existing = target[k];
    if (isPlainObject(v) && isPlainObject(existing)) deepMerge(existing, v);
    else if (isPlainObject(v)) {
      const copy: Tree = {};
      deepMerge(copy, v);
      target[k] = copy;
    } else target[k] = v;
  }
}

function isPlainObject(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** A 32-byte AES-256 key from 64 hex characters or base64 (standard or url-safe), or undefined. */
export function parseEncryptionKey(text: string): Buffer | undefined {
  const value = text.trim();
  const bytes = /^[0-9a-fA-F]{64}$/.test(value) ? Buffer.from(value, 'hex') : /^[A-Za-z0-9+/_-]{42,44}={0,2}$/.test(value) ? Buffer.from(value, 'base64') : undefined;
  return bytes?.length === 32 ? bytes : undefined;
}

export function splitKeys(list: string | undefined): string[] {
  return (list ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
}
