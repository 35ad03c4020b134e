import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createFakeClock } from '../helpers/clock.js';
import { assertEnvelope, rawExchange } from '../helpers/http.js';
import { until } from '../helpers/websocket.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';

type LogLine = Record<string, unknown>;

/** The one log line of the request whose answer carried `requestId`, once it is written. */
async function lineOf(stack: Pick<Stack, 'logs'>, requestId: string | undefined): Promise<LogLine> {
  assert.ok(requestId, 'the answer carries X-Request-Id');
  const find = () => stack.logs.filter((l) => l.includes(requestId));
  await until(() => find().length > 0, `a log line for ${requestId}`);
  const lines = find();
  assert.equal(lines.length, 1, `one line for ${requestId}: ${lines.join('\n')}`);
  return JSON.parse(lines[0] as string) as LogLine;
}

async function requestsTotal(stack: Stack): Promise<string[]> {
  return (await stack.gateway.metrics.registry.metrics()).split('\n').filter((l) => l.startsWith('coze_gateway_http_requests_total{'));
}

/** What a raw connection to the gateway received before the gateway closed it. */
async function untilClosed(url: string, bytes: string): Promise<string> {
  const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  socket.on('error', () => undefined);
  if (bytes) socket.write(bytes);
  await new Promise((resolve) => socket.on('close', resolve));
  return got;
}

describe('connections that time out before their request', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ flags: { 'server.keepAliveTimeoutSeconds': '1', 'server.headersTimeoutSeconds': '2' } });
  });
  after(() => stack.close());

  it('idle-connection-is-not-a-request: a connection that never sends a byte is closed with no answer, log line or count; one that sent part of its headers gets a logged, counted 408', async () => {
    assert.equal(await untilClosed(stack.url, ''), '', 'no answer to a request never made');
    const partial = await untilClosed(stack.url, 'GET /v1/bots/b HTTP/1.1\r\nHost: x\r\n');
    assert.match(partial, /^HTTP\/1\.1 408 /);
    const requestId = /x-request-id: (\S+)/i.exec(partial)?.[1];
    const line = await lineOf(stack, requestId);
    assert.equal(line.status, 408);
    assert.equal(line.error, 'request-timeout');
    assert.equal(stack.logs.filter((l) => l.includes('"status":408')).length, 1, 'the idle connection wrote no line');
    const series = await requestsTotal(stack);
    assert.ok(series.includes('coze_gateway_http_requests_total{route="unmatched",method="OTHER",status="408"} 1'), series.join('\n'));
  });
});

/** Every answer the gateway gives leads, by its logid, to a log line, and is counted. */
describe('refusals are logged and counted', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ env: { CORS_ALLOWED_ORIGINS: 'https://app.example' } });
  });
  after(() => stack.close());

  const head = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;

  it('node-refused-requests-logged-and-counted: 431, a malformed header and CONNECT each get one request line with the logid the client got, and an http_requests_total series', async () => {
    const cases = [
      { bytes: head(['GET /v1/bots/b HTTP/1.1', 'Host: x', `X-Big: ${'a'.repeat(20_000)}`]), status: 431, reason: 'headers-too-large', method: undefined, metricMethod: 'OTHER' },
      { bytes: head(['GET /v1/bots/b HTTP/1.1', 'Host: x', 'Bad Header']), status: 400, reason: 'bad-request', method: undefined, metricMethod: 'OTHER' },
      { bytes: head(['CONNECT api.coze.cn:443 HTTP/1.1', 'Host: api.coze.cn:443']), status: 400, reason: 'absolute-uri', method: 'CONNECT', metricMethod: 'OTHER' },
    ];
    for (const c of cases) {
      const res = await rawExchange(stack.url, c.bytes);
      assertEnvelope(res, c.status, c.reason);
      const line = await lineOf(stack, res.headers['x-request-id'] as string);
      assert.equal(line.level, 'info');
      assert.equal(line.requestId, res.json().detail?.logid, 'the logid of the envelope');
      assert.equal(line.method, c.method, 'the method only when Node parsed the request line');
      assert.equal(line.route, 'unmatched');
      assert.equal(line.path, '-');
      assert.equal(line.status, c.status);
      assert.equal(line.error, c.reason);
      assert.equal(line.durationMs, 0);
      assert.equal(line.bytesIn, 0);
      assert.equal(line.bytesOut, 0);
      assert.equal(line.service, 'coze-session-gateway');
    }
    const series = await requestsTotal(stack);
    assert.ok(series.includes('coze_gateway_http_requests_total{route="unmatched",method="OTHER",status="431"} 1'), series.join('\n'));
    assert.ok(series.includes('coze_gateway_http_requests_total{route="unmatched",method="OTHER",status="400"} 2'), series.join('\n'));
    assert.ok(!stack.logs.join('\n').includes('a'.repeat(100)), 'no header value is logged');
    assertNothingReachedCoze(stack);
  });

  it('gateway-refusal-line-names-the-error: a refusal the gateway answers itself carries its X-Gateway-Error reason, a forwarded answer none', async () => {
    const refused = await fetch(`${stack.url}/v1/bots/b`);
    assert.equal(refused.status, 401);
    const line = await lineOf(stack, refused.headers.get('x-request-id') ?? undefined);
    assert.equal(line.error, 'credential-missing');
    assert.equal(line.status, 401);

    const ok = await fetch(`${stack.url}/v1/bots/b`, { headers: { authorization: `Bearer ${await stack.callerToken('alice')}` } });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    assert.equal('error' in (await lineOf(stack, ok.headers.get('x-request-id') ?? undefined)), false);
  });
});

describe('requests refused before routing are logged with their path', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ env: { CORS_ALLOWED_ORIGINS: 'https://app.example' } });
  });
  after(() => stack.close());

  const exchange = async (requestLine: string, headers: string[] = []) => {
    const res = await rawExchange(stack.url, `${[requestLine, 'Host: x', ...headers, 'Connection: close'].join('\r\n')}\r\n\r\n`);
    return { res, line: await lineOf(stack, res.headers['x-request-id'] as string) };
  };

  it('refused-before-routing-logs-path: path tricks, absolute URIs and token vending while off log the path they asked for, never the query, a fragment or userinfo', async () => {
    const cases = [
      { target: '/v1/bots/..%2f..%2fadmin?authorization=Bearer%20QUERYSECRET', status: 400, reason: 'bad-path', path: '/v1/bots/..%2f..%2fadmin' },
      { target: 'http://user:PASSWORDSECRET@evil.example/v1/bots/b?token=QUERYSECRET', status: 400, reason: 'absolute-uri', path: 'http://evil.example/v1/bots/b' },
      { target: '//user:PASSWORDSECRET@evil.example/v1/bots/b', status: 400, reason: 'bad-path', path: '//evil.example/v1/bots/b' },
      { target: `/v1/bots/${'a'.repeat(3000)}`, status: 400, reason: 'bad-path', path: `/v1/bots/${'a'.repeat(256 - 9)}…` },
      { target: '/v1/"quoted"\\..', status: 400, reason: 'bad-path', path: '/v1/"quoted"\\..' },
    ];
    for (const c of cases) {
      const { res, line } = await exchange(`GET ${c.target} HTTP/1.1`);
      assertEnvelope(res, c.status, c.reason);
      assert.equal(line.path, c.path, c.target.slice(0, 80));
      assert.equal(line.route, 'unmatched');
      assert.equal(line.error, c.reason);
    }
    const vending = await exchange('POST /gateway/token?x=QUERYSECRET HTTP/1.1', ['Content-Length: 0']);
    assertEnvelope(vending.res, 404, 'not-found');
    assert.equal(vending.line.path, '/gateway/token', 'token vending while it is off');
    const all = stack.logs.join('\n');
    for (const secret of ['QUERYSECRET', 'PASSWORDSECRET', 'authorization=']) assert.ok(!all.includes(secret), `${secret} is not logged`);
    assertNothingReachedCoze(stack);
  });

  it('preflight-labelled-preflight: a CORS preflight is logged with its path and counted under route="preflight", allowed or not', async () => {
    const allowed = await exchange('OPTIONS /v3/chat?conversation_id=1 HTTP/1.1', ['Origin: https://app.example', 'Access-Control-Request-Method: POST']);
    assert.equal(allowed.res.status, 204);
    assert.equal(allowed.line.route, 'preflight');
    assert.equal(allowed.line.path, '/v3/chat');
    assert.equal(allowed.line.method, 'OPTIONS');
    const foreign = await exchange('OPTIONS /v3/chat HTTP/1.1', ['Origin: https://evil.example', 'Access-Control-Request-Method: POST']);
    assert.equal(foreign.res.status, 403);
    assert.equal(foreign.line.route, 'preflight');
    const series = await requestsTotal(stack);
    assert.ok(series.includes('coze_gateway_http_requests_total{route="preflight",method="OTHER",status="204"} 1'), series.join('\n'));
    assert.ok(series.includes('coze_gateway_http_requests_total{route="preflight",method="OTHER",status="403"} 1'), series.join('\n'));
    assert.ok(!series.some((l) => l.includes('route="unmatched",method="OTHER"')), 'no preflight is counted as unmatched');
  });
});

describe('a forged identity header is reported', () => {
  let stack: Stack;
  const clock = createFakeClock(Date.now());
  before(async () => {
    stack = await startStack({
      env: { IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', IDENTITY_TRUSTED_HEADER_ALLOW_FROM: '10.0.0.0/8', SESSION_NAME_TEMPLATE: '{source}:{subject}' },
      gatewayDeps: { now: clock.now },
    });
  });
  after(() => stack.close());

  const warnings = () => stack.logs.map((l) => JSON.parse(l) as LogLine).filter((l) => l.level === 'warn' && l.header === 'x-forwarded-user');
  const forge = async (who: string) => {
    const res = await fetch(`${stack.url}/v1/bots/b`, { headers: { 'x-forwarded-user': who } });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('x-gateway-error'), 'untrusted-identity-header');
    await res.arrayBuffer();
  };

  it('trusted-header-outside-allowFrom-logs-warning: a warning names the header and the peer address, never the identity claimed; a flood writes one line a minute with the count it left out', async () => {
    await forge('admin-claimed');
    assert.equal(warnings().length, 1, 'the first refusal is logged at once');
    const [first] = warnings();
    assert.match(String(first?.remoteAddress), /^(::ffff:)?127\.0\.0\.1$/);
    assert.equal(first?.suppressed, 0);
    assert.match(String(first?.msg), /identity\.trustedHeader\.allowFrom/);
    assert.ok(!stack.logs.some((l) => l.includes('admin-claimed')), 'the claimed identity is not logged');

    await forge('second');
    await forge('third');
    assert.equal(warnings().length, 1, 'refusals within the minute are counted, not logged');
    clock.advance(60_000);
    await forge('fourth');
    assert.equal(warnings().length, 2);
    assert.equal(warnings()[1]?.suppressed, 2, 'the next line says how many were left out');
    const failures = (await stack.gateway.metrics.registry.metrics()).split('\n').find((l) => l.startsWith('coze_gateway_auth_failures_total{source="trusted_header",reason="untrusted_source"}'));
    assert.equal(failures?.split(' ')[1], '4', 'the metric counts every refusal');
  });
});

describe('session pseudonyms in the request log', () => {
  let stack: Stack;
  let other: Stack;
  before(async () => {
    // Each stack has its own Coze app, so its own private key: two deployments.
    [stack, other] = await Promise.all([startStack(), startStack()]);
  });
  after(() => Promise.all([stack.close(), other.close()]));

  async function sessionOf(target: Pick<Stack, 'logs' | 'url'>, jwt: string): Promise<unknown> {
    const res = await fetch(`${target.url}/v1/bots/b`, { headers: { authorization: `Bearer ${jwt}` } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    return (await lineOf(target, res.headers.get('x-request-id') ?? undefined)).session;
  }

  it('session-hash-is-keyed: the session field is not the plain SHA-256 prefix, is the same on two replicas of one config, and differs with another Coze key', async () => {
    const replica = await stack.replica();
    const here = await sessionOf(stack, await stack.callerToken('alice'));
    assert.match(String(here), /^[A-Za-z0-9_-]{12}$/);
    assert.notEqual(here, createHash('sha256').update('alice').digest('base64url').slice(0, 12), 'not the unkeyed hash anyone can compute');
    assert.equal(await sessionOf(replica, await stack.callerToken('alice')), here, 'replicas of one deployment agree');
    assert.notEqual(await sessionOf(other, await other.callerToken('alice')), here, 'another deployment (another Coze key) does not');
    assert.ok(!stack.logs.some((l) => l.includes('"alice"')), 'the raw session_name is not logged');
  });
});
