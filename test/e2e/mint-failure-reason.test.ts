import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createJwtSigner } from '../../src/coze/jwt-signer.js';
import { createTokenClient, scrubCozeMessage, TokenMintError } from '../../src/coze/token-client.js';
import { runCli, startCliFixture, type CliFixture } from '../helpers/cli-process.js';
import { assertEnvelope, request } from '../helpers/http.js';
import { startStack } from '../helpers/stack.js';

const otherKeyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

/** Three real misconfigurations, each refused by the emulator with its own error_message. */
const CASES = [
  { name: 'wrong COZE_AUDIENCE', env: { COZE_AUDIENCE: 'api.coze.com' }, message: 'invalid jwt: aud is invalid, expected api.coze.cn' },
  { name: 'wrong COZE_KEY_ID', env: { COZE_KEY_ID: 'not-a-registered-fingerprint' }, message: 'invalid jwt: kid not been registred' },
  { name: 'a private key that is not the registered one', env: { COZE_PRIVATE_KEY_FILE: 'other-key.pem' }, message: 'invalid jwt: signature is invalid' },
] as const;

/**
 * Issue 16 item 3: a refused token exchange says why, as Coze said it: error_code and
 * error_message reach the log, `check-config --mint` and the 502's msg. The JWT and the token
 * never do.
 */
describe('mint-failure-reason: Coze error_code and error_message are carried', () => {
  let fixture: CliFixture;

  before(async () => {
    fixture = await startCliFixture('6161');
    writeFileSync(join(fixture.dir, 'other-key.pem'), otherKeyPem);
  });
  after(() => fixture.close());

  for (const c of CASES) {
    it(`check-config --mint names invalid_client and "${c.message}" for ${c.name}`, async () => {
      const res = await runCli(['check-config', '--mint', 'smoke-test'], { ...fixture.env, ...c.env, ...('COZE_PRIVATE_KEY_FILE' in c.env ? { COZE_PRIVATE_KEY_FILE: join(fixture.dir, c.env.COZE_PRIVATE_KEY_FILE) } : {}) });
      assert.equal(res.code, 1, res.stdout + res.stderr);
      assert.match(res.stderr, /^token exchange failed: invalid_client: Coze refused the token exchange with error_code invalid_client: "(.+)"\. Check coze\.appId, coze\.keyId, coze\.privateKey, coze\.audience and the clock\. \(X-Tt-Logid \w+\)\n$/);
      assert.ok(res.stderr.includes(`"${c.message}"`), res.stderr);
      assert.doesNotMatch(res.stdout + res.stderr, /eyJ|czs_|PRIVATE KEY/);
    });
  }

  it('the 502 msg and the log line carry them too (wrong audience, through the gateway)', async () => {
    const stack = await startStack({ env: { COZE_AUDIENCE: 'api.coze.com' } });
    try {
      const jwt = await stack.callerToken('reason');
      const res = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${jwt}` } });
      assertEnvelope(res, 502, 'token-mint-failed');
      assert.equal(
        res.json().msg,
        'The gateway could not obtain a Coze access token for this session. Coze refused the token exchange with error_code invalid_client: "invalid jwt: aud is invalid, expected api.coze.cn". Check coze.appId, coze.keyId, coze.privateKey, coze.audience and the clock.',
      );
      const line = stack.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'Coze token exchange failed');
      assert.equal(line?.errorCode, 'invalid_client');
      assert.equal(line?.errorMessage, 'invalid jwt: aud is invalid, expected api.coze.cn');
      assert.doesNotMatch(stack.logs.join('\n'), /eyJ[\w-]{10,}\.|czs_/);
    } finally {
      await stack.close();
    }
  });

  it('an error_message that echoes the JWT or a token is scrubbed before it goes anywhere', async () => {
    // A token endpoint that echoes what it was sent: the worst case for our output.
    const echo = http.createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ error_code: 'invalid_client', error_message: `rejected ${req.headers.authorization ?? ''} (czs_${'x'.repeat(40)})\r\nX-Injected: 1` }));
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    try {
      const signer = await createJwtSigner({ appId: '1', keyId: 'k', privateKeyPem: otherKeyPem, audience: 'api.coze.cn', ttlSeconds: 600 });
      const client = createTokenClient({ baseUrl: `http://127.0.0.1:${(echo.address() as { port: number }).port}`, signer, durationSeconds: 900, deadlineMs: 5000 });
      const err = await client.exchange('s').then(
        () => assert.fail('the exchange should fail'),
        (e: unknown) => e,
      );
      client.close();
      assert.ok(err instanceof TokenMintError);
      assert.equal(err.errorMessage, 'rejected Bearer [redacted] ([redacted]) X-Injected: 1');
      assert.doesNotMatch(err.message, /eyJ|czs_|\r|\n/);
    } finally {
      echo.close();
    }
  });

  it('scrubCozeMessage keeps plain sentences and cuts credential-shaped text', () => {
    assert.equal(scrubCozeMessage('app: my bot is currently deactivated by the owner'), 'app: my bot is currently deactivated by the owner');
    assert.equal(scrubCozeMessage('invalid jwt: aud is invalid, expected api.coze.cn'), 'invalid jwt: aud is invalid, expected api.coze.cn');
    assert.equal(scrubCozeMessage('jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJlLXZhbHVl is bad'), 'jwt [redacted] is bad');
    assert.equal(scrubCozeMessage('token pat_abcdef0123 revoked'), 'token [redacted] revoked');
    assert.equal(scrubCozeMessage('key -----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY----- leaked'), 'key [redacted] leaked');
    assert.equal(scrubCozeMessage(`secret ${'A1b2'.repeat(10)} here`), 'secret [redacted] here');
    assert.equal(scrubCozeMessage('too long '.repeat(50)).length, 200);
  });
});
