import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createJwtSigner, type JwtSigner } from '../../src/coze/jwt-signer.js';
import { createTokenCache } from '../../src/coze/token-cache.js';
import { createTokenClient, TokenMintError, type MintAttemptReport, type TokenClientOptions } from '../../src/coze/token-client.js';
import { createEmulator, generateEmulatorApp, type Emulator } from '../../src/emulator/index.js';

const noWait = async () => undefined;

describe('token client against the emulator', () => {
  let emulator: Emulator;
  let signer: JwtSigner;
  let privateKeyPem: string;
  let appId: string;
  let kid: string;

  before(async () => {
    const generated = await generateEmulatorApp('7000000000001');
    privateKeyPem = generated.privateKeyPem;
    appId = generated.app.appId;
    kid = generated.kid;
    emulator = await createEmulator({ apps: [generated.app], audience: 'api.coze.cn' });
    signer = await createJwtSigner({ appId, keyId: kid, privateKeyPem, audience: 'api.coze.cn', ttlSeconds: 600 });
  });
  after(() => emulator.close());
  beforeEach(() => {
    emulator.setTokenFault(undefined);
    emulator.reset();
  });

  function client(overrides: Partial<TokenClientOptions> = {}, reports: MintAttemptReport[] = []) {
    return createTokenClient({
      baseUrl: emulator.url,
      signer,
      durationSeconds: 900,
      deadlineMs: 5000,
      sleep: noWait,
      onExchange: (r) => reports.push(r),
      ...overrides,
    });
  }

  it('exchanges a signed JWT and treats expires_in as an absolute Unix time', async () => {
    const reports: MintAttemptReport[] = [];
    const before = Math.floor(Date.now() / 1000);
    const token = await client({}, reports).exchange('alice');
    const after = Math.floor(Date.now() / 1000);
    assert.match(token.accessToken, /^czs_/);
    assert.ok(token.expiresAt >= before + 900 && token.expiresAt <= after + 900, `expiresAt ${token.expiresAt} is now + 900`);
    assert.equal(emulator.sessionForToken(token.accessToken), 'alice');
    assert.equal(emulator.stats.exchanges, 1);
    assert.equal(reports[0]?.outcome, 'success');
    assert.match(reports[0]?.logId ?? '', /\w+/, 'the X-Tt-Logid is kept');
  });

  it('uses the account variant of the endpoint when an account id is set', async () => {
    const token = await client({ accountId: '12345' }).exchange('bob');
    assert.equal(emulator.sessionForToken(token.accessToken), 'bob');
  });

  it('1,000 concurrent lookups for one new session cause exactly one exchange', async () => {
    const tokenClient = client();
    const cache = createTokenCache({ mint: (s) => tokenClient.exchange(s), maxEntries: 100, refreshBeforeSeconds: 60, waitTimeoutMs: 10_000 });
    const results = await Promise.all(Array.from({ length: 1000 }, () => cache.lookup('stampede')));
    assert.equal(emulator.stats.exchanges, 1);
    assert.equal(new Set(results.map((r) => r.token.accessToken)).size, 1);
    assert.equal(emulator.stats.exchangesBySession.get('stampede'), 1);
  });

  for (const errorCode of ['invalid_client', 'access_deny', 'invalid_request'] as const) {
    it(`does not retry ${errorCode}, sent as HTTP 200 with error_code`, async () => {
      emulator.setTokenFault({ kind: 'error-code', errorCode, httpStatus: 200 });
      const reports: MintAttemptReport[] = [];
      await assert.rejects(client({}, reports).exchange('carol'), (err: unknown) => {
        assert.ok(err instanceof TokenMintError);
        assert.equal(err.outcome, errorCode);
        assert.equal(err.errorCode, errorCode);
        assert.equal(err.attempts, 1);
        assert.match(err.message, new RegExp(`error_code ${errorCode}`));
        return true;
      });
      assert.equal(emulator.tokenRequests, 1, 'exactly one request reached the token endpoint');
      assert.equal(reports[0]?.outcome, errorCode);
    });
  }

  it('classifies an error_code sent with HTTP 4xx the same way', async () => {
    emulator.setTokenFault({ kind: 'error-code', errorCode: 'invalid_client', httpStatus: 401 });
    await assert.rejects(client().exchange('dan'), (err: unknown) => err instanceof TokenMintError && err.outcome === 'invalid_client' && err.httpStatus === 401);
    assert.equal(emulator.tokenRequests, 1);
  });

  it('retries 5xx with backoff and succeeds once the endpoint recovers', async () => {
    emulator.setTokenFault({ kind: 'status', status: 503, times: 2 });
    const delays: number[] = [];
    const token = await client({ sleep: async (ms) => void delays.push(ms) }).exchange('erin');
    assert.equal(emulator.sessionForToken(token.accessToken), 'erin');
    assert.equal(emulator.tokenRequests, 3);
    assert.equal(delays.length, 2);
    assert.ok((delays[1] as number) > (delays[0] as number) * 0.9, 'backoff grows');
  });

  it('retries internal_error and network resets', async () => {
    emulator.setTokenFault({ kind: 'error-code', errorCode: 'internal_error', httpStatus: 200, times: 1 });
    await client().exchange('f1');
    emulator.setTokenFault({ kind: 'reset', times: 1 });
    await client().exchange('f2');
    assert.equal(emulator.stats.exchanges, 2);
    assert.equal(emulator.tokenRequests, 4);
  });

  it('gives up at the deadline with a bounded number of attempts', async () => {
    emulator.setTokenFault({ kind: 'status', status: 500 });
    let clock = 0;
    const reports: MintAttemptReport[] = [];
    const c = client({ deadlineMs: 1000, now: () => clock, sleep: async (ms) => void (clock += ms) }, reports);
    await assert.rejects(c.exchange('gus'), (err: unknown) => err instanceof TokenMintError && err.outcome === 'server_error');
    assert.ok(emulator.tokenRequests >= 2 && emulator.tokenRequests <= 6, `bounded attempts, got ${emulator.tokenRequests}`);
    assert.equal(reports.length, 1);
  });

  it('retry-keeps-a-useful-deadline: no retry is made with under 100 ms left, so Coze\'s own error is what is reported', async () => {
    emulator.setTokenFault({ kind: 'status', status: 500 });
    let clock = 0;
    // Backoffs of 100 then 200 ms (no jitter): a third attempt would start at 300 ms with 50 left.
    const c = client({ deadlineMs: 350, now: () => clock, sleep: async (ms) => void (clock += ms), random: () => 1 });
    await assert.rejects(c.exchange('ivy'), (err: unknown) => err instanceof TokenMintError && err.outcome === 'server_error' && /gave up after 2 attempts/.test(err.message));
    assert.equal(emulator.tokenRequests, 2);
  });

  it('times out a slow endpoint as a timeout', async () => {
    emulator.setTokenFault({ kind: 'hang' });
    await assert.rejects(client({ deadlineMs: 150 }).exchange('hal'), (err: unknown) => err instanceof TokenMintError && err.outcome === 'timeout');
  });

  it('reports an unreachable endpoint as a network error', async () => {
    await assert.rejects(client({ baseUrl: 'http://127.0.0.1:1', deadlineMs: 300 }).exchange('ivy'), (err: unknown) => err instanceof TokenMintError && err.outcome === 'network_error');
  });

  it('every fresh attempt signs a new JWT, so a replayed jti is never sent', async () => {
    emulator.setTokenFault({ kind: 'status', status: 502, times: 3 });
    const token = await client().exchange('jay');
    assert.ok(token.accessToken);
    assert.equal(emulator.stats.exchanges, 1);
  });

  it('never puts the JWT, the key or a token in an error message', async () => {
    const seen: string[] = [];
    const spy: JwtSigner = { sign: async (s) => { const jwt = await signer.sign(s); seen.push(jwt); return jwt; } };
    for (const fault of [
      { kind: 'error-code', errorCode: 'invalid_client', httpStatus: 200 },
      { kind: 'status', status: 500 },
    ] as const) {
      emulator.setTokenFault(fault);
      const err = await client({ signer: spy, deadlineMs: 50 }).exchange('kim').catch((e: unknown) => e);
      const text = `${String(err)} ${JSON.stringify(err)}`;
      for (const jwt of seen) assert.ok(!text.includes(jwt) && !text.includes(jwt.split('.')[2] as string));
      assert.ok(!text.includes('PRIVATE KEY'));
    }
  });
});
