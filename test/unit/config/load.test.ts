import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../../src/config/load.js';
import { listSettings } from '../../../src/config/schema.js';
import { issuesOf } from '../../helpers/config-issues.js';
import { generateRsaKey } from '../../helpers/keys.js';

const key = generateRsaKey();
const dir = mkdtempSync(join(tmpdir(), 'csg-config-'));
const keyFile = join(dir, 'private_key.pem');
writeFileSync(keyFile, key.privatePkcs8);

const baseEnv = { COZE_APP_ID: '1127900106117', COZE_KEY_ID: 'kid-1', COZE_PRIVATE_KEY_FILE: keyFile, IDENTITY_API_KEYS_FILE: '/dev/null' };

describe('config loading', () => {
  it('loads the defaults and derives audience and wsBaseUrl from the base URL', () => {
    const config = loadConfig({ env: baseEnv });
    assert.equal(config.server.port, 8080);
    assert.equal(config.coze.baseUrl, 'https://api.coze.cn');
    assert.equal(config.coze.audience, 'api.coze.cn');
    assert.equal(config.coze.wsBaseUrl, 'wss://ws.coze.cn');
    assert.equal(config.coze.tokenTtlSeconds, 900);
    assert.match(config.coze.privateKey, /BEGIN PRIVATE KEY/);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.coze));
  });

  it('accepts a JWKS URL with a path (regression: the base-URL rule refused every real JWKS URL)', () => {
    const { IDENTITY_API_KEYS_FILE: _keys, ...env } = baseEnv;
    const config = loadConfig({ env: { ...env, IDENTITY_JWT_JWKS_URL: 'https://idp.example.com/.well-known/jwks.json', IDENTITY_JWT_ISSUER: 'https://idp.example.com', IDENTITY_JWT_AUDIENCE: 'my-app' } });
    assert.equal(config.identity.jwt.jwksUrl, 'https://idp.example.com/.well-known/jwks.json');
    const issues = issuesOf(() => loadConfig({ env: { ...env, COZE_BASE_URL: 'https://api.coze.cn/v1' } }));
    assert.equal(issues[0]?.key, 'coze.baseUrl', 'base URLs still take no path');
  });

  it('request-timeout-below-headers-timeout-refused: serve crashed in http.createServer while check-config said valid', () => {
    const flags = (request: number, headers = 66) => ({ 'server.requestTimeoutSeconds': String(request), 'server.headersTimeoutSeconds': String(headers) });
    assert.deepEqual(issuesOf(() => loadConfig({ env: baseEnv, flags: flags(30) })), [
      {
        key: 'server.requestTimeoutSeconds',
        message:
          '(30) is below server.headersTimeoutSeconds (66): a whole request cannot have less time than its headers. Raise it to at least 66, set it to 0 for no deadline, or lower server.headersTimeoutSeconds',
      },
    ]);
    assert.equal(loadConfig({ env: baseEnv, flags: flags(66) }).server.requestTimeoutSeconds, 66, 'equal is what Node accepts');
    assert.equal(loadConfig({ env: baseEnv, flags: flags(0) }).server.requestTimeoutSeconds, 0, '0 is no deadline');
  });

  it('url-settings-refuse-userinfo: a user name or password in a URL setting is refused (printed by check-config and the listening log; fetch refuses a JWKS URL with one)', () => {
    const { IDENTITY_API_KEYS_FILE: _keys, ...env } = baseEnv;
    const jwt = { IDENTITY_JWT_ISSUER: 'https://idp.example.com', IDENTITY_JWT_AUDIENCE: 'my-app' };
    const withUserinfo: Record<string, string> = { 'coze.baseUrl': 'http://svc:Pass@coze.internal', 'coze.wsBaseUrl': 'ws://svc:Pass@coze.internal', 'identity.jwt.jwksUrl': 'http://u:pw@idp/jwks' };
    const urlSettings = listSettings().filter((s) => s.type === 'url' && s.key !== 'cache.redisUrl');
    assert.deepEqual(urlSettings.map((s) => s.key).sort(), Object.keys(withUserinfo).sort(), 'every URL setting is in this table');
    for (const s of urlSettings) {
      for (const value of [withUserinfo[s.key] as string, (withUserinfo[s.key] as string).replace(':Pass@', '@').replace(':pw@', '@')]) {
        const issues = issuesOf(() => loadConfig({ env: { ...env, ...jwt, IDENTITY_JWT_JWKS_URL: 'https://idp.example.com/jwks', [s.env as string]: value } }));
        assert.deepEqual(issues, [{ key: s.key, env: s.env, message: 'takes no user name or password (user:password@): it would be printed in logs, and the gateway does not send it' }], value);
      }
    }
    // A Redis password belongs in its URL: accepted, and a secret (never printed).
    const redis = loadConfig({ env: { ...baseEnv, REDIS_URL: 'redis://app:S3cret@redis:6379/0', CACHE_ENCRYPTION_KEY: 'a'.repeat(64) } });
    assert.equal(redis.cache.redisUrl, 'redis://app:S3cret@redis:6379/0');
    assert.equal(listSettings().find((s) => s.key === 'cache.redisUrl')?.secret, true);
  });

  it('applies defaults < file < env < flags', () => {
    const file = join(dir, 'precedence.yaml');
    writeFileSync(file, 'server:\n  port: 7000\n  host: 127.0.0.1\ncoze:\n  baseUrl: https://api.coze.com\n  tokenTtlSeconds: 1200\nlog:\n  level: warn\n');
    const config = loadConfig({ env: { ...baseEnv, GATEWAY_CONFIG: file, PORT: '7100', LOG_LEVEL: 'debug' }, flags: { port: '7200' } });
    assert.equal(config.server.port, 7200, 'flag beats env');
    assert.equal(config.log.level, 'debug', 'env beats file');
    assert.equal(config.server.host, '127.0.0.1', 'file beats defaults');
    assert.equal(config.coze.tokenTtlSeconds, 1200);
    assert.equal(config.coze.audience, 'api.coze.com');
    assert.equal(config.coze.wsBaseUrl, 'wss://ws.coze.com');
  });

  it('yaml-unquoted-ids: Coze ids written as YAML numbers (Helm --set, editors) are taken as their digits, a 19-digit bot id not rounded', () => {
    const file = join(dir, 'ids.yaml');
    writeFileSync(file, 'coze:\n  appId: 1127900106117\n  accountId: 42\npolicy:\n  allowedBotIds: [7351234567890123456, "7351234567890123457"]\n  allowedWorkflowIds: 7351234567890123458\n');
    const { COZE_APP_ID: _app, ...env } = baseEnv;
    const config = loadConfig({ env: { ...env, GATEWAY_CONFIG: file } });
    assert.equal(config.coze.appId, '1127900106117');
    assert.equal(config.coze.accountId, '42');
    assert.deepEqual(config.policy.allowedBotIds, ['7351234567890123456', '7351234567890123457']);
    assert.deepEqual(config.policy.allowedWorkflowIds, ['7351234567890123458']);
    writeFileSync(file, 'session:\n  prefix: 007\n');
    assert.equal(issuesOf(() => loadConfig({ env: { ...baseEnv, GATEWAY_CONFIG: file } }))[0]?.key, 'session.prefix', 'a text setting that is not an id takes no number (007 would read as 7)');
    writeFileSync(file, 'server:\n  port: 123456789012345678901\n');
    assert.equal(issuesOf(() => loadConfig({ env: { ...baseEnv, GATEWAY_CONFIG: file } }))[0]?.key, 'server.port', 'a numeric setting still refuses what does not fit');
  });

  it('ports-clash: server.port and admin.port on one address are refused at load, as check-config reports it (serve failed later with EADDRINUSE)', () => {
    const issues = issuesOf(() => loadConfig({ env: { ...baseEnv, PORT: '19095', ADMIN_PORT: '19095' } }));
    assert.deepEqual(issues.map((i) => i.key), ['admin.port']);
    assert.match(issues[0]?.message ?? '', /server\.port too \(19095\)/);
    assert.ok(loadConfig({ env: { ...baseEnv, PORT: '19095', ADMIN_PORT: '19095', HOST: '127.0.0.1', ADMIN_HOST: '127.0.0.2' } }), 'two addresses may share a port number');
    assert.ok(loadConfig({ env: { ...baseEnv, PORT: '0', ADMIN_PORT: '0' } }), 'port 0 is a free port each');
  });

  it('claims-need-jwt-only: a template naming {claims.NAME} is refused when API-key or trusted-header callers, who carry no claims, would all get 400', () => {
    const issues = issuesOf(() => loadConfig({ env: { ...baseEnv, SESSION_NAME_TEMPLATE: '{source}:{claims.tenant}:{subject}' } }));
    assert.deepEqual(issues.map((i) => i.key), ['session.template']);
    assert.match(issues[0]?.message ?? '', /names \{claims\.tenant\}, but only JWT callers carry claims: every api_key caller would be refused/);
    const { IDENTITY_API_KEYS_FILE: _keys, ...jwtOnly } = baseEnv;
    assert.ok(loadConfig({ env: { ...jwtOnly, IDENTITY_JWT_SECRET: 'x'.repeat(32), IDENTITY_JWT_ISSUER: 'https://idp.example', IDENTITY_JWT_AUDIENCE: 'gw', SESSION_NAME_TEMPLATE: '{claims.tenant}/{subject}' } }), 'a JWT-only gateway may name claims');
  });

  it('takes --config and --<yaml.key>=value flags', () => {
    const file = join(dir, 'flags.yaml');
    writeFileSync(file, 'coze:\n  accountId: "42"\n');
    const config = loadConfig({ env: baseEnv, flags: { config: file, 'coze.refreshBeforeSeconds': '30' } });
    assert.equal(config.coze.accountId, '42');
    assert.equal(config.coze.refreshBeforeSeconds, 30);
  });

  it('refresh-before-leaves-fresh-life: a refresh point that a fresh token would pass at once is refused, naming the largest value that works', () => {
    // 65 s tokens refreshed 60 s ahead: a token read from another replica is never fresh enough.
    const issues = issuesOf(() => loadConfig({ env: { ...baseEnv, COZE_TOKEN_TTL_SECONDS: '65', COZE_REFRESH_BEFORE_SECONDS: '60' } }));
    const issue = issues.find((i) => i.key === 'coze.refreshBeforeSeconds');
    assert.equal(issue?.env, 'COZE_REFRESH_BEFORE_SECONDS');
    assert.match(issue?.message ?? '', /at most 27 for coze.tokenTtlSeconds 65/);
    assert.equal(loadConfig({ env: { ...baseEnv, COZE_TOKEN_TTL_SECONDS: '65', COZE_REFRESH_BEFORE_SECONDS: '27' } }).coze.refreshBeforeSeconds, 27);
    assert.equal(loadConfig({ env: baseEnv }).coze.refreshBeforeSeconds, 60, 'the defaults (900 and 60) pass');
  });

  it('accepts PKCS#1 keys inline', () => {
    const { COZE_PRIVATE_KEY_FILE: _f, ...env } = baseEnv;
    const config = loadConfig({ env: { ...env, COZE_PRIVATE_KEY: key.privatePkcs1 } });
    assert.match(config.coze.privateKey, /BEGIN RSA PRIVATE KEY/);
  });

  it('reports every bad setting at once, naming the YAML key and the environment variable', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'coze:\n  tokenTtlSecs: 10\nserver:\n  port: 99999\n');
    const issues = issuesOf(() =>
      loadConfig({ env: { ...baseEnv, GATEWAY_CONFIG: file, COZE_TOKEN_TTL_SECONDS: '30', LOG_LEVEL: 'loud', COZE_BASE_URL: 'ftp://x' } }),
    );
    const byKey = new Map(issues.map((i) => [i.key, i]));
    assert.equal(byKey.get('coze.tokenTtlSecs')?.message, 'unknown setting');
    assert.equal(byKey.get('server.port')?.env, 'PORT');
    assert.equal(byKey.get('coze.tokenTtlSeconds')?.env, 'COZE_TOKEN_TTL_SECONDS');
    assert.equal(byKey.get('log.level')?.env, 'LOG_LEVEL');
    assert.equal(byKey.get('coze.baseUrl')?.env, 'COZE_BASE_URL');
    assert.equal(issues.length, 5);
  });

  it('fails on a missing or unusable private key, naming the setting and never echoing the key', () => {
    const { COZE_PRIVATE_KEY_FILE: _f, ...env } = baseEnv;
    const missing = issuesOf(() => loadConfig({ env }));
    assert.deepEqual(missing.map((i) => [i.key, i.env]), [['coze.privateKey', 'COZE_PRIVATE_KEY']]);

    const garbage = '-----BEGIN PRIVATE KEY-----\nnot-really-a-key-SECRETMATERIAL\n-----END PRIVATE KEY-----';
    const bad = issuesOf(() => loadConfig({ env: { ...env, COZE_PRIVATE_KEY: garbage } }));
    assert.equal(bad[0]?.key, 'coze.privateKey');
    assert.ok(!JSON.stringify(bad).includes('SECRETMATERIAL'));

    const ec = issuesOf(() => loadConfig({ env: { ...env, COZE_PRIVATE_KEY: generateEcPem() } }));
    assert.match(ec[0]?.message ?? '', /expected an RSA key/);
  });

  it('rejects a secret set both inline and as a file, and an unreadable secret file', () => {
    const both = issuesOf(() => loadConfig({ env: { ...baseEnv, COZE_PRIVATE_KEY: key.privatePkcs8 } }));
    assert.equal(both[0]?.key, 'coze.privateKeyFile');
    assert.equal(both[0]?.env, 'COZE_PRIVATE_KEY_FILE');
    const unreadable = issuesOf(() => loadConfig({ env: { ...baseEnv, COZE_PRIVATE_KEY_FILE: join(dir, 'nope.pem') } }));
    assert.deepEqual(unreadable, [{ key: 'coze.privateKeyFile', env: 'COZE_PRIVATE_KEY_FILE', message: `cannot read ${join(dir, 'nope.pem')} (ENOENT)` }], 'names the path, and only once');
  });

  it('config-reports-every-bad-setting: schema errors and cross-setting checks are listed together', () => {
    const jwtClaims = { IDENTITY_JWT_ISSUER: 'https://idp.example.com', IDENTITY_JWT_AUDIENCE: 'my-app' };
    const issues = issuesOf(() => loadConfig({ env: { ...baseEnv, ...jwtClaims, PORT: '99999', IDENTITY_JWT_SECRET: 'short', IDENTITY_TRUSTED_HEADER_ALLOW_FROM: 'foo' } }));
    assert.deepEqual(
      issues.map((i) => `${i.key} (${i.env}): ${i.message}`),
      [
        'server.port (PORT): Too big: expected number to be <=65535',
        'identity.jwt.secret (IDENTITY_JWT_SECRET): must be at least 32 bytes',
        'identity.trustedHeader.allowFrom (IDENTITY_TRUSTED_HEADER_ALLOW_FROM): "foo" is not a CIDR such as 10.0.0.0/8',
      ],
    );
  });

  it('config-no-identity-source-names-env-vars: the message names each source by YAML key and environment variable', () => {
    const { IDENTITY_API_KEYS_FILE: _a, ...env } = baseEnv;
    assert.deepEqual(issuesOf(() => loadConfig({ env, flags: { port: 'eighty' } })), [
      { key: 'server.port', env: 'PORT', message: 'Invalid input: expected number, received string' },
      {
        key: 'identity',
        message:
          'configure at least one identity source: identity.jwt.jwksUrl (IDENTITY_JWT_JWKS_URL), identity.jwt.publicKey (IDENTITY_JWT_PUBLIC_KEY or IDENTITY_JWT_PUBLIC_KEY_FILE), identity.jwt.secret (IDENTITY_JWT_SECRET or IDENTITY_JWT_SECRET_FILE), identity.apiKeys.file (IDENTITY_API_KEYS_FILE), identity.trustedHeader.name (IDENTITY_TRUSTED_HEADER)',
      },
    ]);
    // An identity setting that was given but refused is reported as itself, not as "none configured".
    const refused = issuesOf(() => loadConfig({ env: { ...env, IDENTITY_JWT_JWKS_URL: 'not a url' } }));
    assert.deepEqual(refused.map((i) => i.key), ['identity.jwt.jwksUrl']);
  });

  it('jwt-issuer-and-audience-required: a JWT source without identity.jwt.issuer and identity.jwt.audience is refused, naming both (any token its key verifies was accepted)', () => {
    const { IDENTITY_API_KEYS_FILE: _a, ...env } = baseEnv;
    const claims = { IDENTITY_JWT_ISSUER: 'https://idp.example.com', IDENTITY_JWT_AUDIENCE: 'my-app' };
    for (const source of [{ IDENTITY_JWT_JWKS_URL: 'https://idp.example.com/.well-known/jwks.json' }, { IDENTITY_JWT_PUBLIC_KEY: key.publicSpki }, { IDENTITY_JWT_SECRET: 'x'.repeat(32) }]) {
      assert.deepEqual(issuesOf(() => loadConfig({ env: { ...env, ...source } })), [
        {
          key: 'identity.jwt.issuer',
          env: 'IDENTITY_JWT_ISSUER',
          message: 'required with a JWT source: the iss of the tokens meant for this gateway, e.g. https://idp.example.com (a comma list for several). Unset, a token from any issuer whose signature verifies would be accepted',
        },
        {
          key: 'identity.jwt.audience',
          env: 'IDENTITY_JWT_AUDIENCE',
          message:
            'required with a JWT source: the aud your identity provider puts in the tokens meant for this gateway, e.g. its client id or API identifier (a comma list for several). Unset, a token it issued for any other application would be accepted. ' +
            'For an identity provider that sets no aud at all, set identity.jwt.allowMissingAudience (IDENTITY_JWT_ALLOW_MISSING_AUDIENCE) to true instead',
        },
      ]);
      assert.deepEqual(issuesOf(() => loadConfig({ env: { ...env, ...source, IDENTITY_JWT_ISSUER: claims.IDENTITY_JWT_ISSUER } })).map((i) => i.key), ['identity.jwt.audience']);
      assert.deepEqual(issuesOf(() => loadConfig({ env: { ...env, ...source, IDENTITY_JWT_AUDIENCE: claims.IDENTITY_JWT_AUDIENCE } })).map((i) => i.key), ['identity.jwt.issuer']);
      const config = loadConfig({ env: { ...env, ...source, ...claims } });
      assert.deepEqual([config.identity.jwt.issuer, config.identity.jwt.audience], [['https://idp.example.com'], ['my-app']]);
    }
    // An empty list is no setting, and the issues come with the other bad settings, at once.
    const listed = issuesOf(() => loadConfig({ env: { ...env, IDENTITY_JWT_SECRET: 'short', IDENTITY_JWT_ISSUER: ',', PORT: 'eighty' } }));
    assert.deepEqual(listed.map((i) => i.key), ['server.port', 'identity.jwt.secret', 'identity.jwt.issuer', 'identity.jwt.audience']);
  });

  it('jwt-allow-missing-audience: the explicit opt-out for an identity provider without aud loads, but not next to identity.jwt.audience', () => {
    const { IDENTITY_API_KEYS_FILE: _a, ...env } = baseEnv;
    const jwt = { IDENTITY_JWT_JWKS_URL: 'https://idp.example.com/.well-known/jwks.json', IDENTITY_JWT_ISSUER: 'https://idp.example.com' };
    const config = loadConfig({ env: { ...env, ...jwt, IDENTITY_JWT_ALLOW_MISSING_AUDIENCE: 'true' } });
    assert.equal(config.identity.jwt.allowMissingAudience, true);
    assert.equal(config.identity.jwt.audience, undefined);
    assert.deepEqual(issuesOf(() => loadConfig({ env: { ...env, ...jwt, IDENTITY_JWT_ALLOW_MISSING_AUDIENCE: 'true', IDENTITY_JWT_AUDIENCE: 'my-app' } })), [
      {
        key: 'identity.jwt.allowMissingAudience',
        env: 'IDENTITY_JWT_ALLOW_MISSING_AUDIENCE',
        message: 'set either identity.jwt.audience or identity.jwt.allowMissingAudience, not both: with an audience, a token without aud is refused',
      },
    ]);
    assert.equal(loadConfig({ env: { ...env, ...jwt, IDENTITY_JWT_AUDIENCE: 'my-app' } }).identity.jwt.allowMissingAudience, false, 'off by default');
  });

  it('requires an identity source and refuses contradictory identity settings', () => {
    const { IDENTITY_API_KEYS_FILE: _a, ...env } = baseEnv;
    assert.equal(issuesOf(() => loadConfig({ env }))[0]?.key, 'identity');
    const confused = issuesOf(() => loadConfig({ env: { ...env, IDENTITY_JWT_PUBLIC_KEY: key.publicSpki, IDENTITY_JWT_ALGORITHMS: 'HS256' } }));
    assert.equal(confused[0]?.key, 'identity.jwt.algorithms');
    const star = issuesOf(() => loadConfig({ env: { ...baseEnv, CORS_ALLOWED_ORIGINS: '*' } }));
    assert.equal(star[0]?.key, 'cors.allowedOrigins');
  });

  it('refuses an unknown flag', () => {
    const issues = issuesOf(() => loadConfig({ env: baseEnv, flags: { 'coze.nope': '1' } }));
    assert.equal(issues[0]?.key, '--coze.nope');
  });
});

function generateEcPem(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

describe('config: budgets and Coze hooks (issue 18)', () => {
  // A JWT source: only a JWT carries the claims these templates name.
  const { IDENTITY_API_KEYS_FILE: _keys, ...withoutKeys } = baseEnv;
  const jwtBase = { ...withoutKeys, IDENTITY_JWT_SECRET: 'x'.repeat(32), IDENTITY_JWT_ISSUER: 'https://idp.example', IDENTITY_JWT_AUDIENCE: 'gw' };
  const one = (env: Record<string, string>) => issuesOf(() => loadConfig({ env: { ...jwtBase, ...env } }));

  it('loads budgets off by default, in UTC, with chats nobody follows followed up', () => {
    const config = loadConfig({ env: baseEnv });
    assert.deepEqual(config.budgets, {
      tokensPerDay: 0,
      tokensPerMonth: 0,
      requestsPerDay: 0,
      timeZone: 'UTC',
      syncIntervalMs: 1000,
      followUp: { enabled: true, delayMs: 60_000, maxAgeMs: 1_800_000, maxPending: 10_000 },
    });
    const off = loadConfig({ env: { ...baseEnv, BUDGET_FOLLOW_UP_ENABLED: 'false', BUDGET_FOLLOW_UP_DELAY_MS: '5000' } });
    assert.deepEqual([off.budgets.followUp.enabled, off.budgets.followUp.delayMs], [false, 5000]);
    assert.deepEqual(one({ BUDGET_FOLLOW_UP_MAX_PENDING: '0' }).map((i) => [i.key, i.env]), [['budgets.followUp.maxPending', 'BUDGET_FOLLOW_UP_MAX_PENDING']]);
    assert.equal(config.coze.scope.enabled, false);
  });

  it('names the setting of an unknown time zone and of a bad overrides file', () => {
    assert.deepEqual(one({ BUDGET_TIME_ZONE: 'Mars/Olympus' }), [
      { key: 'budgets.timeZone', env: 'BUDGET_TIME_ZONE', message: '"Mars/Olympus" is not an IANA time zone name such as UTC, Asia/Shanghai or Europe/Berlin' },
    ]);
    const missing = join(dir, 'no-budgets.yaml');
    assert.deepEqual(one({ BUDGET_OVERRIDES_FILE: missing }), [{ key: 'budgets.overridesFile', env: 'BUDGET_OVERRIDES_FILE', message: `cannot read ${missing} (ENOENT)` }]);
    const bad = join(dir, 'bad-budgets.yaml');
    writeFileSync(bad, '- subject: alice\n  tokensPerDay: -1\n');
    const [issue] = one({ BUDGET_OVERRIDES_FILE: bad });
    assert.equal(issue?.key, 'budgets.overridesFile');
    assert.match(issue?.message ?? '', /bad-budgets\.yaml: entry 0\.tokensPerDay: .*expected a list of \{subject, source\?, tokensPerDay\?, tokensPerMonth\?, requestsPerDay\?\}/);
    const twice = join(dir, 'twice-budgets.yaml');
    writeFileSync(twice, '- subject: alice\n- subject: alice\n');
    assert.match(one({ BUDGET_OVERRIDES_FILE: twice })[0]?.message ?? '', /entry 1 repeats subject "alice"/);
  });

  it('names the setting of a bad custom_consumer template or a short HMAC secret', () => {
    assert.deepEqual(one({ COZE_CUSTOM_CONSUMER: '{email}' }), [
      { key: 'coze.sessionContext.customConsumer', env: 'COZE_CUSTOM_CONSUMER', message: 'unknown placeholder {email} (use {subject}, {issuer}, {source} or {claims.NAME})' },
    ]);
    assert.deepEqual(one({ COZE_CUSTOM_CONSUMER: '{subject}', COZE_CUSTOM_CONSUMER_HMAC_SECRET: 'short' }), [
      { key: 'coze.sessionContext.customConsumerHmacSecret', env: 'COZE_CUSTOM_CONSUMER_HMAC_SECRET', message: 'must be at least 32 bytes' },
    ]);
  });

  it('template-adjacent-placeholders-refused: two placeholders with no text between them stop start-up, in either template', () => {
    const between = '{claims.tenant} and {subject} have no text between them, so "ab"+"c" and "a"+"bc" would render alike; separate them, e.g. {claims.tenant}:{subject}';
    assert.deepEqual(one({ SESSION_NAME_TEMPLATE: '{claims.tenant}{subject}' }), [{ key: 'session.template', env: 'SESSION_NAME_TEMPLATE', message: between }]);
    assert.deepEqual(one({ COZE_CUSTOM_CONSUMER: '{claims.tenant}{subject}' }), [{ key: 'coze.sessionContext.customConsumer', env: 'COZE_CUSTOM_CONSUMER', message: between }]);
    assert.deepEqual(one({ SESSION_NAME_TEMPLATE: '{issuer}%{subject}' }), [
      { key: 'session.template', env: 'SESSION_NAME_TEMPLATE', message: 'the text between {issuer} and {subject} may not start with "%", which escapes the values' },
    ]);
    assert.equal(loadConfig({ env: { ...jwtBase, SESSION_NAME_TEMPLATE: '{claims.tenant}:{subject}', COZE_CUSTOM_CONSUMER: 't-{claims.tenant}/{subject}' } }).session.template, '{claims.tenant}:{subject}');
  });

  it('refuses a scope without bots, with bots outside the allowlist, or vended permissions broader than proxied ones', () => {
    assert.equal(one({ COZE_SCOPE_ENABLED: 'true' })[0]?.key, 'coze.scope.botIdList');
    assert.deepEqual(one({ COZE_SCOPE_ENABLED: 'true', ALLOWED_BOT_IDS: 'b1', COZE_SCOPE_BOT_IDS: 'b1,b2' }), [
      { key: 'coze.scope.botIdList', env: 'COZE_SCOPE_BOT_IDS', message: 'names bots policy.allowedBotIds does not allow: b2' },
    ]);
    assert.deepEqual(one({ COZE_SCOPE_ENABLED: 'true', ALLOWED_BOT_IDS: 'b1', TOKEN_VENDING_PERMISSIONS: 'Connector.botChat,Workspace.all' }), [
      { key: 'tokenVending.permissionList', env: 'TOKEN_VENDING_PERMISSIONS', message: 'vended tokens are never broader than proxied ones; not in coze.scope.permissionList: Workspace.all' },
    ]);
    assert.equal(one({ TOKEN_VENDING_PERMISSIONS: 'Connector.botChat' })[0]?.message, 'narrows the scope of vended tokens: it needs coze.scope.enabled');
    const config = loadConfig({ env: { ...baseEnv, COZE_SCOPE_ENABLED: 'true', ALLOWED_BOT_IDS: 'b1,b2' } });
    assert.equal(config.coze.scope.botIdList, undefined, 'defaults to policy.allowedBotIds at use');
  });
});
