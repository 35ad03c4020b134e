import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { ConfigError } from '../../src/config/load.js';
import { assertEnvelope, request, startDecoy } from '../helpers/http.js';
import { assertNothingReachedCoze, CALLER_AUDIENCE, CALLER_ISSUER, startStack, type Stack } from '../helpers/stack.js';

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A JWKS endpoint under the test's control, counting every fetch. */
interface KeySetServer {
  url: string;
  fetches: number;
  /** slow: answers after 2.5 s; late: after 400 ms. */
  mode: 'ok' | 'down' | 'slow' | 'late';
  close(): Promise<void>;
}

async function startKeySet(keys: object[]): Promise<KeySetServer> {
  const state = { fetches: 0, mode: 'ok' as KeySetServer['mode'] };
  const server = http.createServer((_req, res) => {
    state.fetches += 1;
    if (state.mode === 'down') return void res.writeHead(503).end('down');
    const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
    if (state.mode === 'slow') setTimeout(answer, 2500);
    else if (state.mode === 'late') setTimeout(answer, 400);
    else answer();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/.well-known/jwks.json`,
    get fetches() {
      return state.fetches;
    },
    get mode() {
      return state.mode;
    },
    set mode(m) {
      state.mode = m;
    },
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

function sign(key: CryptoKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', ...header }).sign(key);
}
const good = () => ({ sub: 'alice', iss: CALLER_ISSUER, aud: CALLER_AUDIENCE, iat: nowSeconds(), exp: nowSeconds() + 3600 });

describe('caller JWTs with a static key', () => {
  let stack: Stack;
  let decoy: Awaited<ReturnType<typeof startDecoy>>;
  before(async () => {
    stack = await startStack();
    decoy = await startDecoy();
  });
  after(async () => {
    await stack.close();
    await decoy.close();
  });
  beforeEach(() => stack.emulator.reset());

  const refused = async (jwt: string, status = 401, reason = 'credential-invalid') => {
    const res = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${jwt}` } });
    assertEnvelope(res, status, reason);
    if (status === 401) assert.ok(res.headers['www-authenticate']);
    const signature = jwt.split('.')[2] ?? '';
    assert.ok(!res.body.includes(jwt) && (signature.length < 16 || !res.body.includes(signature)), 'the token is never echoed');
    assertNothingReachedCoze(stack);
  };

  it('refuses alg none, signed or not', async () => {
    await refused(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(good())}.`);
    await refused(`${b64({ alg: 'none' })}.${b64(good())}.${Buffer.from('sig').toString('base64url')}`);
    await refused(`${b64({ alg: 'NONE' })}.${b64(good())}.`);
  });

  it('refuses HS256 signed with the RSA public key as the HMAC secret (key confusion)', async () => {
    const pem = stack.config.identity.jwt.publicKey ?? '';
    assert.ok(pem.includes('PUBLIC KEY'));
    for (const secret of [pem, pem.trim(), Buffer.from(pem)]) {
      const jwt = await new SignJWT(good()).setProtectedHeader({ alg: 'HS256' }).sign(typeof secret === 'string' ? new TextEncoder().encode(secret) : secret);
      await refused(jwt);
    }
  });

  it('refuses a signature by another key, and by another key that names a kid', async () => {
    const attacker = await generateKeyPair('RS256');
    await refused(await sign(attacker.privateKey, good()));
    await refused(await sign(attacker.privateKey, good(), { kid: 'unknown-kid' }));
  });

  it('never fetches a jku or x5u URL from the token header', async () => {
    const attacker = await generateKeyPair('RS256');
    const decoyUrl = `http://${decoy.address}/keys`;
    await refused(await sign(attacker.privateKey, good(), { jku: decoyUrl, kid: 'a' }));
    await refused(await sign(attacker.privateKey, good(), { x5u: decoyUrl }));
    await refused(await sign(attacker.privateKey, good(), { jwk: await exportJWK(attacker.publicKey) }));
    assert.equal(decoy.hits, 0);
  });

  it('refuses a missing exp, an expired token, a future nbf and a non-numeric exp', async () => {
    const { exp: _exp, ...noExp } = good();
    await refused(await sign(stack.callerKey, noExp));
    await refused(await sign(stack.callerKey, { ...good(), exp: nowSeconds() - 120 }));
    await refused(await sign(stack.callerKey, { ...good(), nbf: nowSeconds() + 600 }));
    await refused(await sign(stack.callerKey, { ...good(), exp: 'tomorrow' }));
  });

  it('jwt-iat-in-the-future-refused: a token issued an hour ahead is 401, one within the clock tolerance is accepted (issue 15, finding 6)', async () => {
    const ahead = await sign(stack.callerKey, { ...good(), iat: nowSeconds() + 3600, exp: nowSeconds() + 7200 });
    await refused(ahead);
    const res = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${ahead}` } });
    assert.match(res.json().msg, /iat claim is in the future/);
    await refused(await sign(stack.callerKey, { ...good(), iat: nowSeconds() + 120 }));
    await refused(await sign(stack.callerKey, { ...good(), iat: 'yesterday' }));
    // identity.jwt.clockToleranceSeconds is 30 by default: a clock 10 s ahead is tolerated.
    const skewed = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${await sign(stack.callerKey, { ...good(), iat: nowSeconds() + 10 })}` } });
    assert.equal(skewed.status, 200, skewed.body);
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, 'alice');
  });

  it('refuses a wrong, missing or list-smuggled iss and aud', async () => {
    await refused(await sign(stack.callerKey, { ...good(), iss: 'https://evil.example' }));
    const { iss: _iss, ...noIss } = good();
    await refused(await sign(stack.callerKey, noIss));
    await refused(await sign(stack.callerKey, { ...good(), aud: 'another-app' }));
    await refused(await sign(stack.callerKey, { ...good(), aud: [] }));
    await refused(await sign(stack.callerKey, { ...good(), iss: [CALLER_ISSUER] }));
  });

  it('jwt-typ-explicit: a token typed as another kind of JWT (logout token, security event, introspection answer) is refused; JWT, at+jwt or no typ pass', async () => {
    // What the identity provider's key also signs, with this gateway's iss, aud and a sub (RFC 8725 section 3.11).
    for (const typ of ['logout+jwt', 'application/logout+jwt', 'secevent+jwt', 'token-introspection+jwt', 'dpop+jwt']) {
      const jwt = await sign(stack.callerKey, good(), { typ });
      await refused(jwt);
      assert.match((await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${jwt}` } })).json().msg, /typ header/, typ);
    }
    await refused(await sign(stack.callerKey, good(), { typ: ['JWT'] }));
    // RFC 7515: media type names are case-insensitive and "application/" may be left out.
    for (const typ of [undefined, 'JWT', 'jwt', 'at+jwt', 'application/at+jwt', 'application/jwt']) {
      const res = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${await sign(stack.callerKey, good(), typ === undefined ? {} : { typ })}` } });
      assert.equal(res.status, 200, `${String(typ)}: ${res.body}`);
    }
  });

  it('refuses a subject that is not a non-empty string', async () => {
    for (const sub of [42, { id: 'alice' }, ['alice'], '', null, true]) await refused(await sign(stack.callerKey, { ...good(), sub }));
    const { sub: _sub, ...noSub } = good();
    await refused(await sign(stack.callerKey, noSub));
  });

  it('refuses a token over 8 KiB without verifying it, and a malformed one', async () => {
    await refused(await sign(stack.callerKey, { ...good(), pad: 'x'.repeat(9000) }));
    await refused('eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln');
    await refused('a.b.c');
  });

  it('accepts the well-formed token (the control case) and forwards only its own session', async () => {
    const res = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${await sign(stack.callerKey, good())}` } });
    assert.equal(res.status, 200, res.body);
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, 'alice');
  });
});

describe('caller JWTs against a JWKS endpoint', () => {
  let keys: { privateKey: CryptoKey; jwk: object };
  let jwks: KeySetServer;
  let stack: Stack;

  before(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    keys = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid: 'idp-1', alg: 'RS256', use: 'sig' } };
    jwks = await startKeySet([keys.jwk]);
    stack = await startStack({
      env: { IDENTITY_JWT_JWKS_URL: jwks.url },
      flags: { 'identity.jwt.jwksCooldownSeconds': '1', 'identity.jwt.jwksTimeoutSeconds': '1' },
    });
  });
  after(async () => {
    await stack.close();
    await jwks.close();
  });

  const call = async (jwt: string) => request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${jwt}` } });

  it('verifies with the fetched key set, fetching it once', async () => {
    const res = await call(await sign(keys.privateKey, good(), { kid: 'idp-1' }));
    assert.equal(res.status, 200, res.body);
    assert.equal(jwks.fetches, 1);
  });

  it('a spray of unknown kids cannot make it hammer the IdP: at most one refetch per cooldown', async () => {
    const before = jwks.fetches;
    const attacker = await generateKeyPair('RS256');
    const sprayed = await Promise.all(Array.from({ length: 40 }, (_, i) => sign(attacker.privateKey, good(), { kid: `random-${i}` })));
    for (const jwt of sprayed) assertEnvelope(await call(jwt), 401, 'credential-invalid');
    assert.ok(jwks.fetches - before <= 1, `fetches during the spray: ${jwks.fetches - before}`);
  });

  it('IdP down: 503 identity-provider-unavailable, fetches held back, recovery once it is back', async () => {
    // A fresh gateway that has never seen the key set, with the IdP down from the start.
    jwks.mode = 'down';
    const cold = await startStack({
      env: { IDENTITY_JWT_JWKS_URL: jwks.url },
      flags: { 'identity.jwt.jwksCooldownSeconds': '1', 'identity.jwt.jwksTimeoutSeconds': '1' },
    });
    try {
      const before = jwks.fetches;
      const jwt = await sign(keys.privateKey, good(), { kid: 'idp-1' });
      for (let i = 0; i < 20; i++) {
        const res = await request(cold.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${jwt}` } });
        assertEnvelope(res, 503, 'identity-provider-unavailable');
      }
      assert.ok(jwks.fetches - before <= 2, `20 requests during the outage cost ${jwks.fetches - before} fetches`);
      assertNothingReachedCoze(cold);
      jwks.mode = 'ok';
      await new Promise((r) => setTimeout(r, 1100));
      const res = await request(cold.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${jwt}` } });
      assert.equal(res.status, 200, res.body);
    } finally {
      jwks.mode = 'ok';
      await cold.close();
    }
  });

  it('IdP slow: the fetch times out at identity.jwt.jwksTimeoutSeconds with 503', async () => {
    jwks.mode = 'slow';
    const cold = await startStack({ env: { IDENTITY_JWT_JWKS_URL: jwks.url }, flags: { 'identity.jwt.jwksTimeoutSeconds': '1' } });
    try {
      const started = Date.now();
      const res = await request(cold.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${await sign(keys.privateKey, good(), { kid: 'idp-1' })}` } });
      assertEnvelope(res, 503, 'identity-provider-unavailable');
      assert.ok(Date.now() - started < 2400, `answered after ${Date.now() - started} ms`);
    } finally {
      jwks.mode = 'ok';
      await cold.close();
    }
  });

  it('client-leaves-during-admission: a caller gone while its JWT waits for the key set gets its concurrency slot back', async () => {
    jwks.mode = 'late';
    const cold = await startStack({ env: { IDENTITY_JWT_JWKS_URL: jwks.url, RATE_LIMIT_MAX_CONCURRENT: '1' } });
    try {
      const jwt = await sign(keys.privateKey, { ...good(), sub: 'dora' }, { kid: 'idp-1' });
      const gone = new AbortController();
      const first = fetch(`${cold.url}/v1/bots/b`, { headers: { authorization: `Bearer ${jwt}` }, signal: gone.signal }).then(
        () => 'answered',
        () => 'aborted',
      );
      await new Promise((r) => setTimeout(r, 100));
      gone.abort();
      assert.equal(await first, 'aborted', 'the caller left while the key set was being fetched');
      // The admission finishes after the caller left, and takes the identity's one slot: it must
      // give it back (it once waited for a close that had already happened). Polled: until the
      // key set answers, the slot is legitimately held.
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 50));
        status = (await request(cold.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${jwt}` } })).status;
      }
      assert.equal(status, 200, 'the same identity is served again: no slot was left taken');
    } finally {
      jwks.mode = 'ok';
      await cold.close();
    }
  });

  it('a token already verified keeps working while the IdP is down', async () => {
    const jwt = await sign(keys.privateKey, { ...good(), sub: 'carol' }, { kid: 'idp-1' });
    assert.equal((await call(jwt)).status, 200);
    jwks.mode = 'down';
    try {
      assert.equal((await call(jwt)).status, 200);
    } finally {
      jwks.mode = 'ok';
    }
  });
});

describe('caller JWTs: iss and aud are always checked (SPEC section 3.1)', () => {
  it('jwt-audience-required: a JWT source without identity.jwt.issuer and identity.jwt.audience does not start (a token the IdP signed for any other application was accepted)', async () => {
    // A gateway that does start is closed again, so that the failure is reported rather than hung.
    const err = await startStack({ env: { IDENTITY_JWT_ISSUER: '', IDENTITY_JWT_AUDIENCE: '' } }).then(
      (started) => started.close(),
      (refused: unknown) => refused,
    );
    assert.ok(err instanceof ConfigError, `start-up should have been refused: ${String(err)}`);
    assert.deepEqual(err.issues.map((i) => `${i.key} (${i.env})`), ['identity.jwt.issuer (IDENTITY_JWT_ISSUER)', 'identity.jwt.audience (IDENTITY_JWT_AUDIENCE)']);
  });

  describe('with the explicit opt-out identity.jwt.allowMissingAudience', () => {
    let stack: Stack;
    before(async () => {
      stack = await startStack({ env: { IDENTITY_JWT_AUDIENCE: '', IDENTITY_JWT_ALLOW_MISSING_AUDIENCE: 'true' } });
    });
    after(() => stack.close());

    it('accepts a token without aud, refuses one that names any audience, and warns at start-up', async () => {
      const { aud: _aud, ...noAud } = good();
      const ok = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${await sign(stack.callerKey, noAud)}` } });
      assert.equal(ok.status, 200, ok.body);
      stack.emulator.reset();
      for (const aud of [CALLER_AUDIENCE, 'payroll-app', ['payroll-app']]) {
        const res = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${await sign(stack.callerKey, { ...good(), aud })}` } });
        assertEnvelope(res, 401, 'credential-invalid');
        assert.match(res.json().msg, /aud claim is not accepted/);
      }
      assertNothingReachedCoze(stack);
      const warnings = stack.logs.map((l) => JSON.parse(l) as { level: string; msg: string }).filter((l) => l.level === 'warn' && l.msg.includes('identity.jwt.allowMissingAudience'));
      assert.equal(warnings.length, 1, stack.logs.join('\n'));
      assert.match(warnings[0]?.msg ?? '', /JWTs without an aud claim are accepted/);
    });
  });
});
