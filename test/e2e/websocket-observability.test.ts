import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { freePort } from '../helpers/cli-process.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { closed, nextEvent, openWebSocket, refusedUpgrade, until } from '../helpers/websocket.js';

/** One sample of Prometheus text, or undefined when the series is absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const requests = (status: number) => `coze_gateway_http_requests_total{route="ws.chat",method="GET",status="${status}"}`;
const upstreamErrors = (kind: string) => `coze_gateway_upstream_errors_total{kind="${kind}"}`;

type Line = Record<string, unknown>;

/** The request log lines of upgrades, parsed. */
const upgradeLines = (stack: Stack): Line[] => stack.logs.map((l) => JSON.parse(l) as Line).filter((l) => l.upgrade === true);

/** The fields every request line carries (SPEC section 7), on an upgrade's line too. */
function assertRequestFields(line: Line | undefined, status: number): asserts line is Line {
  assert.ok(line, `a log line for the ${status}`);
  assert.equal(line.status, status);
  assert.equal(line.method, 'GET');
  assert.equal(line.route, 'ws.chat');
  assert.equal(line.path, '/v1/chat');
  assert.equal(typeof line.requestId, 'string');
  assert.equal(typeof line.durationMs, 'number');
  assert.equal(typeof line.bytesIn, 'number');
  assert.equal(typeof line.bytesOut, 'number');
  assert.ok(!JSON.stringify(line).includes('bot_id'), 'no query string in the line');
}

describe('WebSocket upgrades in the metrics and the request log', () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it('websocket-upgrades-counted-in-http-requests-total: a refused (401), an accepted (101) and a failed (502) upgrade are one request each, with a duration', async () => {
    const s = (stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok' } }));
    const url = `${s.url.replace('http', 'ws')}/v1/chat?bot_id=bot-ok`;
    const authorization = `Bearer ${await s.callerToken('alice')}`;

    assert.equal((await refusedUpgrade(url)).status, 401);
    const ws = await openWebSocket(url, { authorization });
    // The 101 is counted at the handshake, while the socket is still open.
    const whileOpen = await s.gateway.metrics.registry.metrics();
    assert.equal(sample(whileOpen, requests(101)), 1);
    ws.close();
    await closed(ws);
    s.emulator.setApiFault({ kind: 'refuse-upgrade', status: 403, code: 4101, times: 1 });
    const refused = await refusedUpgrade(url, { authorization });
    assert.equal(refused.status, 502);
    assert.equal(refused.gatewayError, 'upstream-bad-response');

    const text = await s.gateway.metrics.registry.metrics();
    assert.equal(sample(text, requests(401)), 1);
    assert.equal(sample(text, requests(101)), 1, 'counted once: not again at the close');
    assert.equal(sample(text, requests(502)), 1);
    assert.equal(sample(text, 'coze_gateway_http_request_duration_seconds_count{route="ws.chat",method="GET"}'), 3);
    assert.equal(sample(text, upstreamErrors('bad_response')), 1, 'a handshake Coze refused for another reason than the token');
    assert.equal(sample(text, upstreamErrors('connect')), 0);
  });

  it('ws-dial-failure-counted-as-upstream-connect-error: Coze\'s WebSocket host refusing connections is a 502 counted as a connect error', async () => {
    const s = (stack = await startStack({ env: { COZE_WS_BASE_URL: `ws://127.0.0.1:${await freePort()}` } }));
    const refused = await refusedUpgrade(`${s.url.replace('http', 'ws')}/v1/chat?bot_id=b`, { authorization: `Bearer ${await s.callerToken('gina')}` });
    assert.equal(refused.status, 502);
    assert.equal(refused.gatewayError, 'upstream-unavailable');
    assert.equal(JSON.parse(refused.body).msg, 'The Coze API could not be reached. (ECONNREFUSED)');

    const text = await s.gateway.metrics.registry.metrics();
    assert.equal(sample(text, upstreamErrors('connect')), 1);
    assert.equal(sample(text, requests(502)), 1);
    const line = upgradeLines(s).at(-1);
    assertRequestFields(line, 502);
    assert.equal(line.requestId, JSON.parse(refused.body).detail.logid);
  });

  it('ws-dial-timeout-counted-as-upstream-timeout: a Coze WebSocket host that never answers the handshake is a 504 counted as a timeout', async (t) => {
    const silent = net.createServer((socket) => socket.on('error', () => undefined));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    t.after(() => {
      silent.close();
    });
    const port = (silent.address() as net.AddressInfo).port;
    const s = (stack = await startStack({ env: { COZE_WS_BASE_URL: `ws://127.0.0.1:${port}`, UPSTREAM_TIMEOUT_SECONDS: '1' } }));
    const refused = await refusedUpgrade(`${s.url.replace('http', 'ws')}/v1/chat?bot_id=b`, { authorization: `Bearer ${await s.callerToken('gina')}` });
    assert.equal(refused.status, 504);
    assert.equal(refused.gatewayError, 'upstream-timeout');
    assert.equal(JSON.parse(refused.body).msg, 'The Coze API did not answer in time. (Coze did not complete the WebSocket handshake within server.upstreamTimeoutSeconds.)');

    const text = await s.gateway.metrics.registry.metrics();
    assert.equal(sample(text, upstreamErrors('timeout')), 1);
    assert.equal(sample(text, upstreamErrors('connect')), 0);
    assert.equal(sample(text, requests(504)), 1);
  });

  it('websocket-log-lines-carry-request-fields: a refused upgrade and a relayed socket each get one line with method, duration and bytes', async () => {
    const s = (stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok' } }));
    const url = `${s.url.replace('http', 'ws')}/v1/chat?bot_id=bot-ok`;

    const refused = await refusedUpgrade(url);
    await until(() => upgradeLines(s).length === 1, 'the refusal is logged');
    const refusedLine = upgradeLines(s)[0];
    assertRequestFields(refusedLine, 401);
    assert.equal(refusedLine.requestId, JSON.parse(refused.body).detail.logid);
    assert.equal(refusedLine.bytesIn, 0);
    assert.equal(refusedLine.bytesOut, 0);

    const ws = await openWebSocket(url, { authorization: `Bearer ${await s.callerToken('alice')}` });
    ws.send(JSON.stringify({ id: '1', event_type: 'chat.update', data: { chat_config: { user_id: 'someone' } } }));
    await nextEvent(ws, 'chat.updated');
    ws.close(1000);
    await closed(ws);
    await until(() => upgradeLines(s).length === 2, 'the relayed socket is logged once it closes');
    const line = upgradeLines(s)[1];
    assertRequestFields(line, 101);
    const upstream = s.emulator.websockets[0];
    assert.ok(upstream);
    // The bytes relayed: what Coze received (the chat.update with its user id forced) and sent.
    const sum = (frames: Array<{ data: Buffer }>) => frames.reduce((n, f) => n + f.data.length, 0);
    assert.equal(line.bytesIn, sum(upstream.frames));
    assert.equal(line.bytesOut, sum(upstream.sent));
    assert.ok(sum(upstream.frames) > 0 && sum(upstream.sent) > 0);
    assert.equal(line.source, 'jwt');
    assert.equal(line.cozeLogId, upstream.logId);
    assert.equal(line.closeCode, 1000);
    assert.equal(line.closedBy, 'client');
    assert.equal(typeof line.handshakeMs, 'number');
    assert.ok((line.durationMs as number) >= (line.handshakeMs as number), 'the duration runs from the request to the close');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(upgradeLines(s).length, 2, 'one line per upgrade');

    // ws-close-line-keyed-pseudonym: the socket's line names alice as her HTTP lines do, by the
    // deployment's keyed pseudonym, never the unkeyed SHA-256 anyone can compute.
    const http = await fetch(`${s.url}/v1/bots/bot-ok`, { headers: { authorization: `Bearer ${await s.callerToken('alice')}` } });
    await http.arrayBuffer();
    const requestId = http.headers.get('x-request-id') ?? assert.fail('no request id');
    await until(() => s.logs.some((l) => l.includes(requestId)), 'the HTTP line is written');
    const httpLine = JSON.parse(s.logs.find((l) => l.includes(requestId)) as string) as { session?: string };
    assert.match(String(httpLine.session), /^[A-Za-z0-9_-]{12}$/);
    assert.equal(line.session, httpLine.session, 'one pseudonym per session across HTTP and WebSocket lines');
    assert.notEqual(line.session, createHash('sha256').update('alice').digest('base64url').slice(0, 12));
  });
});
