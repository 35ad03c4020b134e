import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Emulator } from '../../src/emulator/index.js';
import { runCli as run, startCliFixture, type CliFixture } from '../helpers/cli-process.js';

describe('command line', () => {
  let fixture: CliFixture;
  let emulator: Emulator;
  let env: Record<string, string>;

  before(async () => {
    fixture = await startCliFixture('4242');
    ({ emulator, env } = fixture);
  });
  after(() => fixture.close());

  it('prints its version and help', async () => {
    const version = await run(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^coze-session-gateway \d+\.\d+\.\d+\n$/);
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    for (const word of ['serve', 'demo', 'emulator', 'check-config', 'healthcheck [--ready]', 'COZE_APP_ID', 'docs/configuration.md']) assert.ok(help.stdout.includes(word), word);
    // help-lists-emulator-flags: every flag the emulator reads is in its usage.
    const usage = help.stdout.slice(help.stdout.indexOf('coze-session-gateway emulator'), help.stdout.indexOf('coze-session-gateway check-config'));
    for (const flag of ['--port N', '--host ADDR', '--app-id ID', '--audience AUD', '--write-private-key FILE', '--public-key-file FILE', '--key-id KID']) {
      assert.ok(usage.includes(flag), `${flag} in the emulator usage:\n${usage}`);
    }
  });

  it('exits 2 naming every bad setting, by YAML key and environment variable', async () => {
    const res = await run(['check-config'], { ...env, PORT: 'eighty', COZE_TOKEN_TTL_SECONDS: '5', COZE_KEY_ID: '' , LOG_LEVEL: 'chatty' });
    assert.equal(res.code, 2);
    for (const name of ['server.port (PORT)', 'coze.tokenTtlSeconds (COZE_TOKEN_TTL_SECONDS)', 'coze.keyId (COZE_KEY_ID)', 'log.level (LOG_LEVEL)']) {
      assert.ok(res.stderr.includes(name), `${name} in: ${res.stderr}`);
    }
    assert.ok(!res.stderr.includes('at '), 'no stack trace');
  });

  it('config-reports-every-bad-setting: the example of issue 16 lists all three settings', async () => {
    const jwtClaims = { IDENTITY_JWT_ISSUER: 'https://idp.example.com', IDENTITY_JWT_AUDIENCE: 'my-app' };
    const res = await run(['check-config'], { ...env, ...jwtClaims, PORT: '99999', IDENTITY_JWT_SECRET: 'short', IDENTITY_TRUSTED_HEADER_ALLOW_FROM: 'foo' });
    assert.equal(res.code, 2);
    assert.equal(
      res.stderr,
      [
        'coze-session-gateway: invalid configuration:',
        '  - server.port (PORT): Too big: expected number to be <=65535',
        '  - identity.jwt.secret (IDENTITY_JWT_SECRET): must be at least 32 bytes',
        '  - identity.trustedHeader.allowFrom (IDENTITY_TRUSTED_HEADER_ALLOW_FROM): "foo" is not a CIDR such as 10.0.0.0/8',
        '',
      ].join('\n'),
    );
  });

  it('jwt-issuer-and-audience-required: a JWT source without them exits 2 naming both with the other bad settings; the audience opt-out is a warning line', async () => {
    const { IDENTITY_API_KEYS_FILE: _keys, ...coze } = env;
    const jwtOnly = { ...coze, IDENTITY_JWT_JWKS_URL: 'https://idp.example.com/.well-known/jwks.json' };
    const res = await run(['check-config'], { ...jwtOnly, PORT: 'eighty' });
    assert.equal(res.code, 2);
    const lines = res.stderr.split('\n');
    assert.equal(lines[0], 'coze-session-gateway: invalid configuration:');
    assert.deepEqual(lines.slice(1, -1).map((l) => /^ {2}- ([^:]+):/.exec(l)?.[1]), ['server.port (PORT)', 'identity.jwt.issuer (IDENTITY_JWT_ISSUER)', 'identity.jwt.audience (IDENTITY_JWT_AUDIENCE)'], res.stderr);
    assert.ok(res.stderr.includes('identity.jwt.allowMissingAudience (IDENTITY_JWT_ALLOW_MISSING_AUDIENCE)'), 'the opt-out is named');

    const optedOut = await run(['check-config'], { ...jwtOnly, IDENTITY_JWT_ISSUER: 'https://idp.example.com', IDENTITY_JWT_ALLOW_MISSING_AUDIENCE: 'true' });
    assert.equal(optedOut.code, 0, optedOut.stderr);
    assert.match(optedOut.stdout, /configuration is valid/);
    assert.match(optedOut.stderr, /^coze-session-gateway: warning: identity\.jwt\.allowMissingAudience \(IDENTITY_JWT_ALLOW_MISSING_AUDIENCE\) is true: JWTs without an aud claim are accepted/m);
  });

  it('api-keys-file-is-config: a missing or malformed identity.apiKeys.file exits 2 naming the setting and the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'csg-keys-'));
    try {
      const missing = join(dir, 'absent.yaml');
      const bad = join(dir, 'bad.yaml');
      writeFileSync(bad, '- subject: alice\n  sha256: not-hex\n');
      for (const [file, reason] of [[missing, 'ENOENT'], [bad, 'entry 0: expected 64 hex characters']] as const) {
        for (const command of [['check-config'], ['serve']]) {
          const res = await run(command, { ...env, IDENTITY_API_KEYS_FILE: file });
          assert.equal(res.code, 2, `${command[0]} with ${reason}: ${res.stderr}`);
          assert.ok(res.stderr.includes(`identity.apiKeys.file (IDENTITY_API_KEYS_FILE): ${file}: ${reason}`), res.stderr);
          assert.ok(!res.stderr.includes('fatal') && !res.stderr.includes('    at '), 'a configuration message, no stack trace');
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('duration-past-timer-limit-refused: check-config exits 2 naming each too-long timeout by YAML key and environment variable', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'csg-durations-'));
    try {
      const file = join(dir, 'gateway.yaml');
      writeFileSync(file, 'server:\n  keepAliveTimeoutSeconds: 3000000\n');
      const res = await run(['check-config'], { ...env, GATEWAY_CONFIG: file, UPSTREAM_TIMEOUT_SECONDS: '3000000', COZE_MINT_DEADLINE_SECONDS: '3000000' });
      assert.equal(res.code, 2, res.stderr);
      for (const line of [
        '  - server.keepAliveTimeoutSeconds: Too big: expected number to be <=86400',
        '  - server.upstreamTimeoutSeconds (UPSTREAM_TIMEOUT_SECONDS): Too big: expected number to be <=86400',
        '  - coze.mintDeadlineSeconds (COZE_MINT_DEADLINE_SECONDS): Too big: expected number to be <=86400',
      ]) {
        assert.ok(res.stderr.includes(line), `${line} in: ${res.stderr}`);
      }
      assert.ok(!res.stderr.includes('TimeoutOverflowWarning'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('request-timeout-below-headers-timeout-refused: serve exits 2 naming both settings instead of crashing in Node', async () => {
    const res = await run(['serve', '--server.requestTimeoutSeconds=30', '--server.headersTimeoutSeconds=66'], { ...env, HOST: '127.0.0.1', PORT: '0', ADMIN_HOST: '127.0.0.1', ADMIN_PORT: '0' });
    assert.equal(res.code, 2, res.stderr);
    assert.match(res.stderr, /^ {2}- server\.requestTimeoutSeconds: \(30\) is below server\.headersTimeoutSeconds \(66\)/m);
    assert.ok(!res.stderr.includes('out of range') && !res.stderr.includes('fatal'), res.stderr);
  });

  it('url-settings-refuse-userinfo: check-config exits 2 naming the setting and never echoes the password', async () => {
    const res = await run(['check-config'], { ...env, COZE_BASE_URL: 'http://svc:Pass1234@127.0.0.1:1' });
    assert.equal(res.code, 2, res.stdout + res.stderr);
    assert.ok(res.stderr.includes('  - coze.baseUrl (COZE_BASE_URL): takes no user name or password (user:password@)'), res.stderr);
    assert.ok(!(res.stdout + res.stderr).includes('Pass1234'));
  });

  it('listen-failure-names-both-settings: serve exits 2 naming host and port of the listener that cannot start', async () => {
    const listeners = { HOST: '127.0.0.1', PORT: '0', ADMIN_HOST: '127.0.0.1', ADMIN_PORT: '0' };
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine, and nothing is sent to it.
    const foreignHost = await run(['serve'], { ...env, ...listeners, HOST: '192.0.2.1' });
    assert.equal(foreignHost.code, 2, foreignHost.stderr);
    assert.ok(
      foreignHost.stderr.includes('  - server.host (HOST): cannot listen on 192.0.2.1:0: 192.0.2.1 is not an address of this machine (EADDRNOTAVAIL); with server.port (PORT) 0'),
      foreignHost.stderr,
    );
    const busyAdmin = await run(['serve'], { ...env, ...listeners, ADMIN_PORT: String(emulator.port) });
    assert.equal(busyAdmin.code, 2, busyAdmin.stderr);
    assert.ok(busyAdmin.stderr.includes(`  - admin.port (ADMIN_PORT): port ${emulator.port} on 127.0.0.1 is already in use; with admin.host (ADMIN_HOST) 127.0.0.1`), busyAdmin.stderr);
    assert.ok(!(foreignHost.stderr + busyAdmin.stderr).includes('fatal'), 'a configuration error, not a crash');
  });

  it('command-flags-checked: a flag a command does not take, or a stray word, is a usage error naming it (exit 2), not ignored', async () => {
    const cases: Array<[string[], string]> = [
      [['demo', '--once', '--port', '0', '--admin-port', '0', '--emulator-port', '0', '--bogus', '1'], 'demo takes no --bogus; its flags: --once, --port N, --admin-port N, --emulator-port N'],
      [['demo', '--once', 'now'], 'demo takes no argument "now"'],
      [['emulator', '--prot', '1'], 'emulator takes no --prot; its flags: --port N, --host ADDR, --app-id ID, --audience AUD, --write-private-key FILE, --public-key-file FILE, --key-id KID'],
      [['serve', '--once'], 'serve takes no --once; its flags: --config FILE, --<yaml.key>=VALUE'],
      [['check-config', 'extra'], 'check-config takes no argument "extra"'],
      [['healthcheck', '--once'], 'healthcheck takes no --once; its flags: --ready, --config FILE, --<yaml.key>=VALUE'],
    ];
    for (const [args, message] of cases) {
      // Short: on the old code the emulator started and never returned.
      const res = await run(args, env, 20_000);
      assert.equal(res.code, 2, `${args.join(' ')}: ${res.stdout}${res.stderr}`);
      assert.equal(res.stderr, `coze-session-gateway: ${message}\nRun "coze-session-gateway --help" for usage.\n`);
      assert.equal(res.stdout, '', 'nothing started');
    }
  });

  it('exits 2 on an unknown command or flag', async () => {
    assert.equal((await run(['frobnicate'])).code, 2);
    assert.equal((await run(['check-config', '--no-such-setting=1'], env)).code, 2);
  });

  it('check-config --mint performs one exchange and never prints the token', async () => {
    emulator.reset();
    const res = await run(['check-config', '--mint', 'user-7'], env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /configuration is valid/);
    assert.match(res.stdout, /minted a token for session_name "user-7": expires at \d{4}-\d\d-\d\dT/);
    assert.equal(emulator.stats.exchanges, 1);
    assert.ok(!/czs_/.test(res.stdout + res.stderr), 'the token is not printed');
    assert.ok(!(res.stdout + res.stderr).includes('PRIVATE KEY'));
  });

  it('check-config --mint reports a refused exchange with its Coze error code', async () => {
    emulator.setTokenFault({ kind: 'error-code', errorCode: 'invalid_client', httpStatus: 200, times: 1 });
    const res = await run(['check-config', '--mint', 'user-8'], env);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /token exchange failed: invalid_client/);
    assert.match(res.stderr, /X-Tt-Logid \w+/);
  });

  it('demo --once tells the isolation story and exits 0', async () => {
    const res = await run(['demo', '--once', '--port', '0', '--admin-port', '0', '--emulator-port', '0']);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    for (const line of ['alice creates a conversation', 'bob lists conversations', "bob tries to read alice's conversation", 'Isolation held', 'curl ']) {
      assert.ok(res.stdout.includes(line), line);
    }
    // demo-prints-export: the printed lines are shell that, pasted, set ALICE and BOB for the
    // curl and SDK snippets (process.env.ALICE needs the export).
    assert.match(res.stdout, /^ {2}export ALICE=[\w-]+\.[\w-]+\.[\w-]+$/m);
    assert.match(res.stdout, /^ {2}export BOB=[\w-]+\.[\w-]+\.[\w-]+$/m);
    assert.match(res.stdout, /alice> Echo: What is session isolation\?/);
  });

  it('demo names a busy port', async () => {
    const res = await run(['demo', '--once', '--port', String(emulator.port), '--admin-port', '0', '--emulator-port', '0']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, new RegExp(`port ${emulator.port} on 127.0.0.1 is already in use \\(--port\\)`));
  });
});
