import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertEnvelope, rawExchange, request, startDecoy } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';

/** Request lines, Host and headers crafted to turn the gateway into an open proxy or to smuggle. */
describe('request line, Host and headers', () => {
  let stack: Stack;
  let bearer: string;
  let decoy: Awaited<ReturnType<typeof startDecoy>>;

  before(async () => {
    stack = await startStack({ env: { IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', IDENTITY_TRUSTED_HEADER_ALLOW_FROM: '10.0.0.0/8', SESSION_SHARED_NAMESPACE: 'true' } });
    bearer = `Bearer ${await stack.callerToken('alice')}`;
    decoy = await startDecoy();
  });
  after(async () => {
    await stack.close();
    await decoy.close();
  });
  beforeEach(() => stack.emulator.reset());

  const decoyAddress = () => decoy.address;
  const nothingReachedCoze = () => assertNothingReachedCoze(stack);
  const head = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;

  describe('never an open proxy', () => {
    it('refuses an absolute-URI request line naming another host with 400 absolute-uri', async () => {
      const res = await rawExchange(stack.url, head([`GET http://${decoyAddress()}/v1/bots/b HTTP/1.1`, `Host: ${decoyAddress()}`, `Authorization: ${bearer}`, 'Connection: close']));
      assertEnvelope(res, 400, 'absolute-uri');
      assert.equal(decoy.hits, 0);
      nothingReachedCoze();
    });

    it('refuses an absolute-URI request line naming Coze itself too (one form only)', async () => {
      const res = await rawExchange(stack.url, head([`GET ${stack.emulator.url}/v1/bots/b HTTP/1.1`, 'Host: x', `Authorization: ${bearer}`, 'Connection: close']));
      assertEnvelope(res, 400, 'absolute-uri');
      nothingReachedCoze();
    });

    it('answers CONNECT with 400 absolute-uri in the envelope and closes, never tunnels', async () => {
      const res = await rawExchange(stack.url, head([`CONNECT ${decoyAddress()} HTTP/1.1`, `Host: ${decoyAddress()}`, `Authorization: ${bearer}`]));
      assertEnvelope(res, 400, 'absolute-uri');
      assert.equal(res.closed, true, 'the connection is closed');
      assert.equal(decoy.hits, 0);
      nothingReachedCoze();
    });

    it('refuses the asterisk form (OPTIONS *)', async () => {
      const res = await rawExchange(stack.url, head(['OPTIONS * HTTP/1.1', 'Host: x', 'Connection: close']));
      assertEnvelope(res, 400, 'bad-request');
      nothingReachedCoze();
    });

    it('ignores a Host or X-Forwarded-Host naming another host: the request goes to coze.baseUrl only', async () => {
      const tricks: Array<Record<string, string>> = [{ host: decoyAddress() }, { 'x-forwarded-host': decoyAddress() }, { host: decoyAddress(), 'x-forwarded-host': decoyAddress(), 'x-forwarded-proto': 'https' }];
      for (const headers of tricks) {
        const res = await request(stack.url, { path: '/v1/bots/b', headers: { ...headers, authorization: bearer } });
        assert.equal(res.status, 200, res.body);
        const seen = stack.emulator.requests.at(-1);
        assert.equal(seen?.headers.host, new URL(stack.emulator.url).host, 'Coze sees its own Host');
        assert.equal(seen?.headers['x-forwarded-host'], undefined);
        assert.equal(seen?.headers['x-forwarded-proto'], undefined);
      }
      assert.equal(decoy.hits, 0);
    });
  });

  describe('headers', () => {
    it('refuses CR/LF inside a header value with 400 in the envelope (Node never parses it as two headers)', async () => {
      const res = await rawExchange(stack.url, head(['GET /v1/bots/b HTTP/1.1', 'Host: x', `Authorization: ${bearer}`, 'X-Note: a\rX-Injected: 1', 'Connection: close']));
      assertEnvelope(res, 400, 'bad-request');
      assert.equal(res.closed, true);
      nothingReachedCoze();
    });

    it('refuses a bare LF smuggled into the trusted identity header', async () => {
      const res = await rawExchange(stack.url, head(['GET /v1/bots/b HTTP/1.1', 'Host: x', 'X-Forwarded-User: alice\nX-Forwarded-User: bob', 'Connection: close']));
      assert.equal(res.status, 400, res.raw.slice(0, 200));
      nothingReachedCoze();
    });

    it('refuses a subject claim holding CR/LF: it cannot become a session_name', async () => {
      const token = await stack.callerToken('alice\r\nx-injected: 1');
      assertEnvelope(await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${token}` } }), 400, 'bad-session-name');
      nothingReachedCoze();
    });

    it('refuses subjects with spaces, controls or over 128 characters for the same reason', async () => {
      for (const subject of ['alice bob', 'alice\u0000', 'al\u00efce', 'a'.repeat(200)]) {
        const token = await stack.callerToken(subject);
        assertEnvelope(await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${token}` } }), 400, 'bad-session-name');
      }
      nothingReachedCoze();
    });

    it('Connection: authorization cannot strip the session token or forward the caller credential', async () => {
      const res = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: bearer, connection: 'keep-alive, authorization, x-api-key, cookie', cookie: 'sid=1' } });
      assert.equal(res.status, 200, res.body);
      const seen = stack.emulator.requests.at(-1);
      assert.equal(seen?.sessionName, 'alice', 'Coze got the session token for alice');
      assert.ok(!String(seen?.headers.authorization).includes(bearer.slice(7)), "the caller's JWT never reaches Coze");
      assert.equal(seen?.headers.cookie, undefined);
      assert.ok(!String(seen?.headers.connection ?? '').includes('authorization'));
    });

    it('refuses two Authorization headers with 400 duplicate-header (Node would keep only the first)', async () => {
      const other = `Bearer ${await stack.callerToken('bob')}`;
      const res = await rawExchange(stack.url, head(['GET /v1/bots/b HTTP/1.1', 'Host: x', `Authorization: ${bearer}`, `Authorization: ${other}`, 'Connection: close']));
      assertEnvelope(res, 400, 'duplicate-header');
      nothingReachedCoze();
    });

    it('refuses two trusted identity headers and two X-Api-Key headers the same way', async () => {
      for (const name of ['X-Forwarded-User', 'X-Api-Key']) {
        const res = await rawExchange(stack.url, head(['GET /v1/bots/b HTTP/1.1', 'Host: x', `${name}: alice`, `${name}: bob`, 'Connection: close']));
        assertEnvelope(res, 400, 'duplicate-header');
      }
      nothingReachedCoze();
    });

    it('refuses two credentials folded into one Authorization line', async () => {
      const res = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `${bearer}, Bearer other` } });
      assertEnvelope(res, 401, 'credential-invalid');
      nothingReachedCoze();
    });

    it('answers oversized headers with 431 in the envelope', async () => {
      const res = await rawExchange(stack.url, head(['GET /v1/bots/b HTTP/1.1', 'Host: x', `Authorization: ${bearer}`, `X-Big: ${'a'.repeat(20 * 1024)}`, 'Connection: close']));
      assertEnvelope(res, 431, 'headers-too-large');
      nothingReachedCoze();
    });

    it('answers a huge bearer token with 431 before any verification', async () => {
      const res = await rawExchange(stack.url, head(['GET /v1/bots/b HTTP/1.1', 'Host: x', `Authorization: Bearer ${'a'.repeat(17_000)}.b.c`, 'Connection: close']));
      assertEnvelope(res, 431, 'headers-too-large');
      nothingReachedCoze();
    });
  });

  describe('request smuggling', () => {
    const post = (extra: string[], body: string) => `${head(['POST /v3/chat HTTP/1.1', 'Host: x', `Authorization: ${bearer}`, 'Content-Type: application/json', ...extra])}${body}`;
    const smuggled = 'GET /v1/bots/smuggled HTTP/1.1\r\nHost: x\r\n\r\n';

    it('refuses Content-Length together with Transfer-Encoding', async () => {
      const body = `0\r\n\r\n${smuggled}`;
      const res = await rawExchange(stack.url, post([`Content-Length: ${body.length}`, 'Transfer-Encoding: chunked'], body));
      assertEnvelope(res, 400, 'bad-request');
      assert.equal(res.closed, true);
      assert.ok(!stack.emulator.requests.some((r) => r.path.includes('smuggled')));
      nothingReachedCoze();
    });

    for (const te of ['chunked, identity', 'xchunked', 'chunked\t', 'identity']) {
      it(`refuses an invalid Transfer-Encoding (${JSON.stringify(te)})`, async () => {
        const res = await rawExchange(stack.url, post([`Transfer-Encoding: ${te}`], `5\r\nhello\r\n0\r\n\r\n${smuggled}`));
        assert.equal(res.status, 400, res.raw.slice(0, 300));
        assert.equal(res.closed, true);
        nothingReachedCoze();
      });
    }

    it('refuses two different Content-Length values', async () => {
      const res = await rawExchange(stack.url, post(['Content-Length: 2', 'Content-Length: 40'], `{}${smuggled}`));
      assertEnvelope(res, 400, 'bad-request');
      nothingReachedCoze();
    });

    it('bytes after a body are a separate (pipelined) request, never part of the forwarded one', async () => {
      // The gateway re-serialises the JSON body, so trailing bytes cannot ride along to Coze;
      // they are parsed as the next request, which has no credential.
      const body = `{"bot_id":"b","additional_messages":[]}`;
      const res = await rawExchange(stack.url, post([`Content-Length: ${body.length}`], body + smuggled), 3000);
      assert.equal(res.status, 200, res.raw.slice(0, 300));
      const statuses = [...res.raw.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
      assert.deepEqual(statuses, ['200', '401']);
      assert.ok(!stack.emulator.requests.some((r) => r.path.includes('smuggled')));
      assert.equal(stack.emulator.requests.length, 1);
    });

    it('bytes after a Connection: close request are dropped, and that request is still answered', async () => {
      const body = `{"bot_id":"b","additional_messages":[]}`;
      const res = await rawExchange(stack.url, post([`Content-Length: ${body.length}`, 'Connection: close'], body + smuggled), 5000);
      assert.equal(res.status, 200, res.raw.slice(0, 300));
      assert.equal((res.raw.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'exactly one response');
      assert.equal(res.closed, true);
      assert.ok(!stack.emulator.requests.some((r) => r.path.includes('smuggled')));
    });
  });
});
