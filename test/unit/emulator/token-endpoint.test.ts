import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { importPKCS8, SignJWT, type JWTPayload } from 'jose';
import { createEmulator, generateEmulatorApp, type Emulator } from '../../../src/emulator/index.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

describe('emulator token endpoint', () => {
  let emulator: Emulator;
  let sign: (payload: JWTPayload, header?: Record<string, unknown>, key?: string) => Promise<string>;
  let kid: string;
  let disabledKid: string;
  let disabledKey: string;
  const now = () => Math.floor(Date.now() / 1000);

  before(async () => {
    const app = await generateEmulatorApp('111');
    const disabled = await generateEmulatorApp('222');
    kid = app.kid;
    disabledKid = disabled.kid;
    disabledKey = disabled.privateKeyPem;
    emulator = await createEmulator({ apps: [app.app, { ...disabled.app, disabled: true, name: 'old-app' }] });
    sign = async (payload, header = {}, key = app.privateKeyPem) =>
      new SignJWT(payload).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid, ...header }).sign(await importPKCS8(key, 'RS256'));
  });
  after(() => emulator.close());

  const claims = (over: JWTPayload = {}): JWTPayload => ({ iss: '111', aud: 'api.coze.cn', iat: now(), exp: now() + 600, jti: randomBytes(32).toString('hex'), session_name: 's1', ...over });

  async function exchange(jwt: string, body: unknown = { grant_type: GRANT, duration_seconds: 900 }) {
    const res = await fetch(`${emulator.url}/api/permission/oauth2/token`, { method: 'POST', headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, logId: res.headers.get('x-tt-logid'), body: (await res.json()) as Record<string, unknown> };
  }

  it('mints a token bound to the session, with an absolute expires_in and an X-Tt-Logid', async () => {
    const res = await exchange(await sign(claims()));
    assert.equal(res.status, 200);
    assert.match(String(res.body.access_token), /^czs_/);
    const expiresIn = res.body.expires_in as number;
    assert.ok(Math.abs(expiresIn - (now() + 900)) <= 2);
    assert.ok(res.logId);
    assert.equal(emulator.sessionForToken(String(res.body.access_token)), 's1');
  });

  const otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const rejected: Array<[string, () => Promise<string>, string | undefined]> = [
    ['a bad signature', () => sign(claims(), {}, otherKey), 'invalid_client'],
    ['an unknown kid', () => sign(claims(), { kid: 'nope' }), 'invalid_client'],
    ['a wrong iss', () => sign(claims({ iss: '999' })), 'invalid_client'],
    ['a wrong aud', () => sign(claims({ aud: 'api.coze.com' })), 'invalid_client'],
    ['an expired exp', () => sign(claims({ iat: now() - 1200, exp: now() - 600 })), 'invalid_client'],
    ['an iat in the future', () => sign(claims({ iat: now() + 600, exp: now() + 1200 })), 'invalid_client'],
    ['a missing jti', () => sign(claims({ jti: undefined })), 'invalid_client'],
    ['a non-string session_name', () => sign(claims({ session_name: 42 })), 'invalid_client'],
    ['typ other than JWT', () => sign(claims(), { typ: 'at+jwt' }), 'invalid_client'],
  ];
  for (const [name, make, code] of rejected) {
    it(`refuses ${name}`, async () => {
      const before = emulator.stats.exchanges;
      const res = await exchange(await make());
      assert.equal(res.body.error_code, code);
      assert.ok(res.logId);
      assert.equal(emulator.stats.exchanges, before);
    });
  }

  it('accepts each jti once', async () => {
    const jwt = await sign(claims());
    assert.equal((await exchange(jwt)).status, 200);
    const replay = await exchange(jwt);
    assert.equal(replay.body.error_code, 'invalid_client');
    assert.match(String(replay.body.error_message), /already used/);
  });

  it('checks grant_type and duration_seconds', async () => {
    assert.equal((await exchange(await sign(claims()), { grant_type: 'password' })).body.error_code, 'unsupported_grant_type');
    for (const duration of [0, 86400, 1.5, '900']) {
      assert.equal((await exchange(await sign(claims()), { grant_type: GRANT, duration_seconds: duration })).body.error_code, 'invalid_request', String(duration));
    }
    const defaulted = await exchange(await sign(claims()), { grant_type: GRANT, scope: null, client_id: 'x' });
    assert.ok(Math.abs((defaulted.body.expires_in as number) - (now() + 900)) <= 2, 'duration_seconds defaults to 900');
  });

  it('records the scope and session_context a token was minted with, refuses a malformed scope as invalid_request, and ignores a malformed session_context', async () => {
    const scope = { account_permission: { permission_list: ['Connector.botChat'] }, attribute_constraint: { connector_bot_chat_attribute: { bot_id_list: ['b1'] } } };
    const good = await exchange(await sign(claims({ session_name: 'scoped', session_context: { device_info: { custom_consumer: 'c-1' } } })), { grant_type: GRANT, scope });
    assert.equal(good.status, 200);
    const record = emulator.exchangeLog.find((r) => r.accessToken === good.body.access_token);
    assert.deepEqual(record?.scope, scope);
    assert.deepEqual(record?.sessionContext, { device_info: { custom_consumer: 'c-1' } });
    assert.equal(emulator.tokenInfo(String(good.body.access_token))?.customConsumer, 'c-1');
    // A normal app records the scope but does not apply it (Coze applies it to channel apps only).
    assert.equal(emulator.tokenInfo(String(good.body.access_token))?.botIds, undefined);

    const malformed: Array<[unknown, string]> = [
      ['Connector.botChat', 'scope'],
      [{ account_permission: ['Connector.botChat'] }, 'scope.account_permission'],
      [{ account_permission: { permission_list: 'Connector.botChat' } }, 'scope.account_permission.permission_list'],
      [{ attribute_constraint: { connector_bot_chat_attribute: { bot_id_list: [42] } } }, 'scope.attribute_constraint.connector_bot_chat_attribute.bot_id_list'],
    ];
    for (const [bad, parameter] of malformed) {
      const before = emulator.stats.exchanges;
      const res = await exchange(await sign(claims()), { grant_type: GRANT, scope: bad });
      assert.equal(res.body.error_code, 'invalid_request', JSON.stringify(bad));
      assert.equal(res.body.error_message, `invalid request: ${parameter}`);
      assert.equal(emulator.stats.exchanges, before, 'no token for a malformed scope');
    }
    // What the SDKs send for fields they leave unset (coze-go: null permission and lists; cozepy: null constraint).
    for (const nulls of [
      { account_permission: null, attribute_constraint: null, workspace_permission: null },
      { account_permission: { permission_list: null }, attribute_constraint: { connector_bot_chat_attribute: { bot_id_list: null } } },
      { account_permission: { permission_list: ['Connector.botChat'] }, attribute_constraint: { connector_bot_chat_attribute: null } },
    ]) {
      const res = await exchange(await sign(claims()), { grant_type: GRANT, scope: nulls });
      assert.equal(res.status, 200, JSON.stringify(nulls));
      assert.equal(typeof res.body.access_token, 'string');
    }
    // Coze's oauth_jwt page documents no error for a malformed session_context: accepted, and a non-string consumer ignored.
    for (const context of [{ device_info: { custom_consumer: 7 } }, 'not an object', { device_info: [] }]) {
      const res = await exchange(await sign(claims({ session_context: context })));
      assert.equal(res.status, 200, JSON.stringify(context));
      assert.equal(emulator.tokenInfo(String(res.body.access_token))?.customConsumer, undefined);
    }
  });

  it('answers access_deny for a deactivated app', async () => {
    const jwt = await new SignJWT(claims({ iss: '222' })).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: disabledKid }).sign(await importPKCS8(disabledKey, 'RS256'));
    const res = await exchange(jwt);
    assert.equal(res.body.error_code, 'access_deny');
    assert.match(String(res.body.error_message), /old-app is currently deactivated/);
  });

  it('refuses more than three keys per app', async () => {
    const app = await generateEmulatorApp('333');
    const keys = [1, 2, 3, 4].map((i) => ({ kid: `k${i}`, publicKeyPem: app.app.keys[0]?.publicKeyPem ?? '' }));
    await assert.rejects(createEmulator({ apps: [{ appId: '333', keys }] }), /at most 3 keys/);
  });

  it('revoked and unknown tokens get code 4100 on the API', async () => {
    const token = String((await exchange(await sign(claims({ session_name: 'rev' })))).body.access_token);
    const call = async (t: string) => (await (await fetch(`${emulator.url}/v1/bots/b`, { headers: { authorization: `Bearer ${t}` } })).json()) as { code: number };
    assert.equal((await call(token)).code, 0);
    emulator.revokeToken(token);
    assert.equal((await call(token)).code, 4100);
    assert.equal((await call('czs_unknown')).code, 4100);
  });
});
