import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { issuesOf } from '../helpers/config-issues.js';
import { request } from '../helpers/http.js';
import { CALLER_AUDIENCE, CALLER_ISSUER, startStack, type Stack } from '../helpers/stack.js';

/**
 * Issue 15, finding 11: identity sources shared one namespace. With the default `{subject}`
 * template, JWT subject `alice` and API key subject `alice` got the same session_name, so one
 * Coze history, and nothing warned. Start-up now refuses several sources with a template that
 * does not hold {source}, and says how to choose; session.sharedNamespace is the explicit opt-in.
 * Several accepted issuers (identity.jwt.issuer) are the same ambiguity within the JWT source:
 * sub `admin` of tenant A and of tenant B got one session_name; the template needs {issuer}.
 */
describe('identity-namespaces: two sources cannot share a session_name by accident', () => {
  let dir: string;
  let keysFile: string;
  let stack: Stack;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'csg-namespaces-'));
    keysFile = join(dir, 'keys.yaml');
    writeFileSync(keysFile, `- subject: alice\n  sha256: ${createHash('sha256').update('alice-api-key-0123456789').digest('hex')}\n`);
    stack = await startStack({ env: { IDENTITY_API_KEYS_FILE: keysFile, SESSION_NAME_TEMPLATE: '{source}:{subject}' } });
  });
  after(async () => {
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // The iss and aud a JWT source needs; without a JWT source they are not used.
  const base = () => ({ COZE_APP_ID: '1', COZE_KEY_ID: 'k', COZE_PRIVATE_KEY: stack.privateKeyPem, IDENTITY_JWT_ISSUER: 'https://idp.example', IDENTITY_JWT_AUDIENCE: 'gateway' });

  for (const [what, env] of [
    ['a JWT secret and API keys', { IDENTITY_JWT_SECRET: 'x'.repeat(32), IDENTITY_API_KEYS_FILE: '' }],
    ['a JWT key set and a trusted header', { IDENTITY_JWT_JWKS_URL: 'https://idp.example/jwks.json', IDENTITY_TRUSTED_HEADER: 'x-forwarded-user' }],
    ['API keys and a trusted header, with a template naming the issuer', { IDENTITY_API_KEYS_FILE: '', IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', SESSION_NAME_TEMPLATE: '{issuer}/{subject}' }],
  ] as const) {
    it(`start-up refuses ${what} without {source} in session.template, and says how to choose`, () => {
      const full = { ...base(), ...env, ...('IDENTITY_API_KEYS_FILE' in env ? { IDENTITY_API_KEYS_FILE: keysFile } : {}) };
      assert.throws(
        () => loadConfig({ env: full }),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, String(err));
          assert.equal(err.issues.length, 1, err.message);
          assert.equal(err.issues[0]?.key, 'session.template');
          assert.equal(err.issues[0]?.env, 'SESSION_NAME_TEMPLATE');
          assert.match(err.message, /several identity sources are configured/);
          assert.match(err.message, /put \{source\} in the template \(e\.g\. "\{source\}:\{subject\}"; existing users' histories then move/);
          assert.match(err.message, /session\.sharedNamespace \(SESSION_SHARED_NAMESPACE\) to true if every source names the same people/);
          return true;
        },
      );
    });
  }

  it('one source, a template with {source}, or session.sharedNamespace: true start', () => {
    assert.ok(loadConfig({ env: { ...base(), IDENTITY_JWT_SECRET: 'x'.repeat(32) } }));
    assert.ok(loadConfig({ env: { ...base(), IDENTITY_JWT_SECRET: 'x'.repeat(32), IDENTITY_API_KEYS_FILE: keysFile, SESSION_NAME_TEMPLATE: 'tenant-{source}-{subject}' } }));
    const shared = loadConfig({ env: { ...base(), IDENTITY_JWT_SECRET: 'x'.repeat(32), IDENTITY_API_KEYS_FILE: keysFile, SESSION_SHARED_NAMESPACE: 'true' } });
    assert.equal(shared.session.sharedNamespace, true);
  });

  it('jwt-issuers-share-no-namespace: several accepted issuers and a template without {issuer} are refused, naming the settings and how to choose', () => {
    // sub "admin" of tenant A and of tenant B got one session_name, so one Coze history.
    const tenants = { ...base(), IDENTITY_JWT_SECRET: 'x'.repeat(32), IDENTITY_JWT_ISSUER: 'https://tenant-a.example,https://tenant-b.example' };
    assert.throws(
      () => loadConfig({ env: tenants }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.deepEqual(err.issues, [
          {
            key: 'session.template',
            env: 'SESSION_NAME_TEMPLATE',
            message:
              'identity.jwt.issuer (IDENTITY_JWT_ISSUER) accepts several issuers (https://tenant-a.example, https://tenant-b.example) and "{subject}" does not hold {issuer}, so the same subject from two issuers would get one session_name and share one Coze history. ' +
              'Either put {issuer} in the template (e.g. "{issuer}|{subject}"; existing users\' histories then move to new session names), ' +
              'or set session.sharedNamespace (SESSION_SHARED_NAMESPACE) to true if every issuer names the same people (or a claim in the template tells them apart).',
          },
        ]);
        return true;
      },
    );
    assert.equal(loadConfig({ env: { ...tenants, SESSION_NAME_TEMPLATE: '{issuer}|{subject}' } }).session.template, '{issuer}|{subject}');
    assert.equal(loadConfig({ env: { ...tenants, SESSION_SHARED_NAMESPACE: 'true' } }).session.sharedNamespace, true);
    assert.ok(loadConfig({ env: { ...tenants, IDENTITY_JWT_ISSUER: 'https://tenant-a.example,https://tenant-a.example' } }), 'one issuer listed twice is one namespace');
    // With several sources as well, each ambiguity is named; the template can settle both.
    const issues = issuesOf(() => loadConfig({ env: { ...tenants, IDENTITY_API_KEYS_FILE: keysFile } }));
    assert.deepEqual(issues.map((i) => [i.key, /several identity sources/.test(i.message), /accepts several issuers/.test(i.message)]), [
      ['session.template', true, false],
      ['session.template', false, true],
    ]);
    assert.ok(loadConfig({ env: { ...tenants, IDENTITY_API_KEYS_FILE: keysFile, SESSION_NAME_TEMPLATE: '{source}|{issuer}|{subject}' } }));
  });

  it('with {issuer} in the template, admin of two issuers are two Coze sessions with two histories', async () => {
    const tenantB = 'https://tenant-b.example';
    const replica = await stack.replica({ IDENTITY_JWT_ISSUER: `${CALLER_ISSUER},${tenantB}`, SESSION_NAME_TEMPLATE: '{source}|{issuer}|{subject}' });
    const admin = async (issuer: string) => ({
      authorization: `Bearer ${await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject('admin').setIssuer(issuer).setAudience(CALLER_AUDIENCE).setIssuedAt().setExpirationTime('1h').sign(stack.callerKey)}`,
      'content-type': 'application/json',
    });
    const created = await request(replica.url, { method: 'POST', path: '/v1/conversation/create', headers: await admin(CALLER_ISSUER), body: '{"bot_id":"b"}' });
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, `jwt|${CALLER_ISSUER}|admin`);
    const conversationId = (JSON.parse(created.body) as { data: { id: string } }).data.id;
    const other = await request(replica.url, { method: 'POST', path: `/v1/conversation/message/list?conversation_id=${conversationId}`, headers: await admin(tenantB), body: '{}' });
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, `jwt|${tenantB}|admin`);
    assert.equal((JSON.parse(other.body) as { code: number }).code, 4101, "tenant B's admin cannot read tenant A's admin's conversation");
  });

  it('with {source} in the template, JWT alice and API key alice are two Coze sessions with two histories', async () => {
    const jwt = { authorization: `Bearer ${await stack.callerToken('alice')}`, 'content-type': 'application/json' };
    const key = { 'x-api-key': 'alice-api-key-0123456789', 'content-type': 'application/json' };
    const created = await request(stack.url, { method: 'POST', path: '/v1/conversation/create', headers: jwt, body: '{"bot_id":"b"}' });
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, 'jwt:alice');
    const conversationId = (JSON.parse(created.body) as { data: { id: string } }).data.id;
    const viaKey = await request(stack.url, { method: 'POST', path: `/v1/conversation/message/list?conversation_id=${conversationId}`, headers: key, body: '{}' });
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, 'api_key:alice');
    assert.equal((JSON.parse(viaKey.body) as { code: number }).code, 4101, "the API key's alice cannot read the JWT alice's conversation");
  });
});
