import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createMetrics } from '../../../src/metrics/metrics.js';
import type { UpstreamResponse } from '../../../src/proxy/forwarder.js';
import { relayResponse } from '../../../src/proxy/relay.js';
import type { InspectedResponse } from '../../../src/proxy/rewrite-response.js';

/** Coze's answer as the forwarder gives it, counting who asks for its body stream. */
function upstreamAnswer(headers: http.IncomingHttpHeaders, stream: Readable = new PassThrough()) {
  const seen = { bodyAsked: 0, cancelled: 0 };
  const answer: UpstreamResponse = {
    statusCode: 200,
    headers,
    get body() {
      seen.bodyAsked += 1;
      return stream;
    },
    collect: () => assert.fail('the relay never collects'),
    cancel: () => {
      seen.cancelled += 1;
    },
  };
  return { answer, seen };
}

/** One request to a server whose handler relays `answer`, optionally after the client left. */
async function relayOnce(answer: UpstreamResponse, inspected: InspectedResponse, options: { clientGone?: boolean } = {}) {
  const metrics = createMetrics({ registry: new Registry(), routeNames: ['bot'], tokenCacheEntries: () => 0, defaultMetrics: false });
  let relayed!: () => void;
  const done = new Promise<void>((resolve) => (relayed = resolve));
  const server = http.createServer((_req, res) => {
    if (options.clientGone) res.destroy();
    relayResponse({
      upstream: answer,
      res,
      ownHeaders: { 'x-request-id': 'r-1' },
      route: 'bot',
      framing: undefined,
      inspected,
      metrics,
      streams: new Set(),
      idleTimeoutMs: 1000,
      requestStarted: 0,
      onBytes: () => {},
    });
    relayed();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/bots/b`;
    const response = await fetch(url).then(
      async (r) => ({ status: r.status, headers: r.headers, text: await r.text() }),
      () => undefined,
    );
    await done;
    return response;
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('relay', () => {
  it('relay-complete-no-stream: an answer read whole is written from its bytes, and no body stream is made for it', async () => {
    const text = '{"code":0,"msg":"","data":{"bot_id":"b"}}';
    const { answer, seen } = upstreamAnswer({ 'content-type': 'application/json', 'content-length': '999', 'x-tt-logid': 'log-1' });
    const got = await relayOnce(answer, { tokenRejected: false, cozeCode: 0, prefix: [Buffer.from(text.slice(0, 10)), Buffer.from(text.slice(10))], complete: true });
    assert.ok(got);
    assert.equal(got.status, 200);
    assert.equal(got.text, text);
    assert.equal(got.headers.get('content-length'), String(Buffer.byteLength(text)), "the relayed body's own length, not Coze's");
    assert.equal(got.headers.get('x-tt-logid'), 'log-1');
    assert.equal(got.headers.get('x-request-id'), 'r-1');
    assert.equal(seen.bodyAsked, 0, 'the body stream was never made');
  });

  it('relay-streams-the-rest: an answer not read whole is streamed from its body after the bytes already read', async () => {
    const stream = new PassThrough();
    const { answer, seen } = upstreamAnswer({ 'content-type': 'application/json' }, stream);
    stream.end('"rest"]');
    const got = await relayOnce(answer, { tokenRejected: false, cozeCode: undefined, prefix: [Buffer.from('["first",')], complete: false });
    assert.equal(got?.text, '["first","rest"]');
    assert.equal(seen.bodyAsked, 1);
  });

  it('relay-client-gone: when the client left before the relay, the answer is cancelled and no stream is made', async () => {
    const { answer, seen } = upstreamAnswer({ 'content-type': 'application/json' });
    await relayOnce(answer, { tokenRejected: false, cozeCode: undefined, prefix: [Buffer.from('{')], complete: false }, { clientGone: true });
    assert.deepEqual(seen, { bodyAsked: 0, cancelled: 1 });
  });
});
