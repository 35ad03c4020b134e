import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createForwarder, toUpstreamError, UpstreamError, type Forwarder, type UpstreamRequest, type UpstreamResponse } from '../../../src/proxy/forwarder.js';

/**
 * The forwarder's contract, against a plain node:http origin over real sockets: the guarantees
 * the proxy handler and the relay build on (docs/architecture.md).
 */
interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  closedEarly: boolean;
}

type Route = (req: http.IncomingMessage, res: http.ServerResponse) => void;

describe('forwarder (undici Pool)', () => {
  let origin: http.Server;
  let url: string;
  let forwarder: Forwarder;
  let route: Route;
  let seen: Seen[];
  let connections: number;
  let lastRequestClosed: Promise<void>;

  before(async () => {
    origin = http.createServer((req, res) => {
      const record: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.alloc(0), closedEarly: false };
      seen.push(record);
      lastRequestClosed = new Promise((resolve) =>
        res.on('close', () => {
          record.closedEarly = !res.writableFinished;
          resolve();
        }),
      );
      route(req, res);
    });
    origin.on('connection', () => (connections += 1));
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
    forwarder = createForwarder({ target: url });
  });
  after(async () => {
    await forwarder.close();
    origin.closeAllConnections();
    await new Promise((resolve) => origin.close(resolve));
  });
  beforeEach(() => {
    seen = [];
    connections = 0;
    route = (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        (seen.at(-1) as Seen).body = Buffer.concat(chunks);
        res.writeHead(200, { 'content-type': 'application/json', 'x-tt-logid': 'logid-1', 'set-cookie': ['a=1', 'b=2'] });
        res.end('{"code":0}');
      });
    };
  });

  const send = (request: Partial<UpstreamRequest>) =>
    new Promise<UpstreamResponse>((resolve, reject) => {
      forwarder.send({ method: 'GET', path: '/', headers: {}, body: null, ...request }, (err, res) => (res ? resolve(res) : reject(err)));
    });
  /** undici makes a connection available again one event-loop turn after its answer ended (client-h1.js, onMessageComplete). */
  const reusable = () => new Promise((resolve) => setImmediate(resolve));
  const read = async (res: UpstreamResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  };

  it('sends method, path, query, headers and body to the configured origin, and hands back status, headers and bytes', async () => {
    const res = await send({ method: 'POST', path: '/v3/chat?x=1&y=%2F', headers: { 'content-type': 'application/json', 'content-length': '9', authorization: 'Bearer czs_1' }, body: Buffer.from('{"a":"b"}') });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-tt-logid'], 'logid-1');
    assert.deepEqual(res.headers['set-cookie'], ['a=1', 'b=2'], 'the relay decides what to drop, not the forwarder');
    assert.equal(await read(res), '{"code":0}');
    const request = seen[0] as Seen;
    assert.equal(request.method, 'POST');
    assert.equal(request.url, '/v3/chat?x=1&y=%2F');
    assert.equal(request.headers.host, new URL(url).host, 'Host is the origin, never the caller');
    assert.equal(request.headers.authorization, 'Bearer czs_1');
    assert.equal(request.body.toString(), '{"a":"b"}');
  });

  it('reuses one keep-alive connection for requests one after another', async () => {
    for (let i = 0; i < 20; i++) await read(await send({ path: `/n/${i}` }));
    assert.equal(seen.length, 20);
    assert.ok(connections <= 1, `${connections} connections for 20 sequential requests`);
  });

  it('streams a Readable body: the origin reads the first bytes before the rest exists', async () => {
    let originGotFirst!: () => void;
    const firstArrived = new Promise<void>((resolve) => (originGotFirst = resolve));
    route = (req, res) => {
      let total = 0;
      req.on('data', (c: Buffer) => {
        total += c.length;
        originGotFirst();
      });
      req.on('end', () => res.end(String(total)));
    };
    const upload = new PassThrough();
    const answered = send({ method: 'POST', path: '/v1/files/upload', headers: { 'content-type': 'application/octet-stream' }, body: upload });
    upload.write(Buffer.alloc(64 * 1024, 1));
    await firstArrived;
    upload.end(Buffer.alloc(64 * 1024, 2));
    assert.equal(await read(await answered), String(128 * 1024));
  });

  it('passes each chunk of a stream on at once (no buffering)', async () => {
    let writeSecond!: () => void;
    route = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event:one\ndata:{}\n\n');
      writeSecond = () => res.end('event:two\ndata:{}\n\n');
    };
    const res = await send({ path: '/v3/chat' });
    const first = await new Promise<string>((resolve) => res.body.once('data', (c: Buffer) => resolve(c.toString())));
    assert.equal(first, 'event:one\ndata:{}\n\n', 'event one arrived while the origin still held event two');
    writeSecond();
    assert.equal(await read(res), 'event:two\ndata:{}\n\n');
  });

  it('destroying the answer body aborts the upstream request (Coze stops generating)', async () => {
    route = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event:one\ndata:{}\n\n');
    };
    const res = await send({ path: '/v3/chat' });
    await new Promise((resolve) => res.body.once('data', resolve));
    res.body.destroy();
    await lastRequestClosed;
    assert.equal(seen[0]?.closedEarly, true);
  });

  it('abort() before the answer calls done once, with the reason, and closes the upstream request', async () => {
    route = () => undefined;
    const reason = new Error('client gone');
    let calls = 0;
    const outcome = new Promise<Error | null>((resolve) => {
      const call = forwarder.send({ method: 'GET', path: '/hang', headers: {}, body: null }, (err) => {
        calls += 1;
        resolve(err);
      });
      const waitForOrigin = setInterval(() => {
        if (seen.length === 0) return;
        clearInterval(waitForOrigin);
        call.abort(reason);
        call.abort(new Error('a second abort is ignored'));
      }, 5);
    });
    assert.equal(await outcome, reason);
    await lastRequestClosed;
    assert.equal(seen[0]?.closedEarly, true);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(calls, 1);
  });

  it('a connection reset before the answer fails as `reset`', async () => {
    route = (req) => req.socket.destroy();
    const err = await send({ path: '/reset' }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof UpstreamError, String(err));
    assert.equal(err.failure, 'reset');
  });

  it('stale-get-resendable: a GET reset on a connection that carried an earlier answer, before any byte of this one, may be sent again', async () => {
    await read(await send({ path: '/first' }));
    await reusable();
    route = (req) => req.socket.destroy();
    const err = await send({ path: '/v1/bots/b' }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof UpstreamError, String(err));
    assert.equal(err.failure, 'reset');
    assert.equal(connections, 1, 'the second request went on the first one\'s connection');
    assert.equal(err.resendable, true);
  });

  it('stale-post-not-resendable: a POST Coze read whole on a reused connection, then a reset before the answer, is never sent again', async () => {
    await read(await send({ path: '/first' }));
    await reusable();
    route = (req) => {
      // Coze read the whole request and began working on it (a workflow run), then the connection dropped.
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        (seen.at(-1) as Seen).body = Buffer.concat(chunks);
        req.socket.destroy();
      });
    };
    const err = await send({ method: 'POST', path: '/v1/workflow/run', headers: { 'content-length': '2' }, body: Buffer.from('{}') }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof UpstreamError, String(err));
    assert.equal(err.failure, 'reset');
    assert.equal(connections, 1, 'the POST went on the first request\'s connection');
    assert.equal((seen[1] as Seen).body.toString(), '{}', 'Coze had the whole request');
    assert.equal(err.resendable, false);
  });

  it('closed-idle-connection-post-sent-once: a POST written after Coze closed the idle connection goes, once, on a new connection', async () => {
    // The case where nothing of the request was written: undici reads a pending FIN before it
    // writes to an idle socket, so the POST never fails and is never sent twice.
    let warm: Socket | undefined;
    const fresh = createForwarder({ target: url });
    const sendFresh = (request: Partial<UpstreamRequest>) =>
      new Promise<UpstreamResponse>((resolve, reject) => fresh.send({ method: 'GET', path: '/', headers: {}, body: null, ...request }, (err, res) => (res ? resolve(res) : reject(err))));
    try {
      const plain = route;
      route = (req, res) => {
        warm = req.socket;
        plain(req, res);
      };
      await read(await sendFresh({ path: '/first' }));
      await reusable();
      route = plain;
      (warm as Socket).destroy();
      const res = await sendFresh({ method: 'POST', path: '/v1/workflow/run', headers: { 'content-length': '2' }, body: Buffer.from('{}') });
      assert.equal(res.statusCode, 200);
      await read(res);
      assert.deepEqual(seen.map((r) => r.url), ['/first', '/v1/workflow/run'], 'the POST reached Coze once');
      assert.equal(connections, 2, 'on a new connection');
    } finally {
      await fresh.close();
    }
  });

  it('reset-on-fresh-connection-not-stale: a reset on a connection that carried nothing before is not a stale connection', async () => {
    // A forwarder of its own, so no connection of an earlier test is reused.
    const fresh = createForwarder({ target: url });
    route = (req) => {
      // Coze read the whole request, then the connection dropped: it may have acted on it.
      req.resume();
      req.on('end', () => req.socket.destroy());
    };
    const err = await new Promise<Error | null>((resolve) => fresh.send({ method: 'POST', path: '/v3/chat', headers: { 'content-length': '2' }, body: Buffer.from('{}') }, (e) => resolve(e)));
    await fresh.close();
    assert.ok(err instanceof UpstreamError, String(err));
    assert.equal(err.failure, 'reset');
    assert.equal(err.resendable, false);
  });

  it('reset-after-answer-began-not-stale: a reused connection cut after the first bytes of the answer is not a stale connection', async () => {
    await read(await send({ path: '/first' }));
    await reusable();
    route = (req) => {
      req.resume();
      req.socket.write('HTTP/1.1 200 OK\r\ncontent-', () => req.socket.destroy());
    };
    const err = await send({ method: 'POST', path: '/v3/chat', headers: { 'content-length': '2' }, body: Buffer.from('{}') }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof UpstreamError, String(err));
    assert.equal(err.failure, 'reset');
    assert.equal(connections, 1);
    assert.equal(err.resendable, false);
  });

  it('a cut in the middle of an answer errors its body as `reset`', async () => {
    route = (req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event:one\ndata:{}\n\n', () => setTimeout(() => req.socket.destroy(), 10));
    };
    const res = await send({ path: '/v3/chat' });
    const err = await read(res).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof UpstreamError, String(err));
    assert.equal(err.failure, 'reset');
  });

  it('a refused connection fails as `connect`', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const nowhere = createForwarder({ target: `http://127.0.0.1:${port}` });
    const err = await new Promise<Error | null>((resolve) => nowhere.send({ method: 'GET', path: '/', headers: {}, body: null }, (e) => resolve(e)));
    await nowhere.close();
    assert.ok(err instanceof UpstreamError, String(err));
    assert.equal(err.failure, 'connect');
    assert.equal(err.code, 'ECONNREFUSED');
  });

  it('never calls done before send() returns, even when the request is refused at once', async () => {
    let returned = false;
    const err = await new Promise<Error | null>((resolve) => {
      // undici refuses hop-by-hop framing headers by throwing inside dispatch().
      forwarder.send({ method: 'GET', path: '/', headers: { 'transfer-encoding': 'chunked' }, body: null }, (e) => {
        assert.equal(returned, true, 'done ran inside send()');
        resolve(e);
      });
      returned = true;
    });
    assert.ok(err instanceof Error);
    assert.equal(seen.length, 0);
  });

  it('an upload stream that fails aborts the request with its error', async () => {
    route = (req) => req.resume();
    const upload = new PassThrough();
    const tooLarge = new Error('body too large');
    const answered = send({ method: 'POST', path: '/v1/files/upload', headers: {}, body: upload });
    upload.write('x'.repeat(1024));
    await new Promise((resolve) => setTimeout(resolve, 20));
    upload.destroy(tooLarge);
    await assert.rejects(answered, (e: unknown) => e === tooLarge);
  });

  it('holds back the origin while the answer is not read (backpressure)', async () => {
    let written = 0;
    route = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024);
      const pump = () => {
        while (written < 64 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    };
    const res = await send({ path: '/big' });
    res.body.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(written < 16 * 1024 * 1024, `the origin wrote ${written} bytes for a reader that never read`);
    res.body.destroy();
    await lastRequestClosed;
  });

  /** collect() from the forwarder's callback, as the inspection does: before any byte is read. */
  const collect = (request: Partial<UpstreamRequest>, limit: number) =>
    new Promise<{ res: UpstreamResponse; err: Error | null; chunks: Buffer[]; complete: boolean; chunkCalls: number }>((resolve, reject) => {
      forwarder.send({ method: 'GET', path: '/', headers: {}, body: null, ...request }, (err, res) => {
        if (!res) return reject(err);
        let chunkCalls = 0;
        res.collect(limit, () => (chunkCalls += 1), (e, chunks, complete) => resolve({ res, err: e, chunks, complete, chunkCalls }));
      });
    });

  it('collect-small-answer: a small answer is read whole, and the connection serves the next request', async () => {
    route = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"code":0,');
      setTimeout(() => res.end('"msg":""}'), 20);
    };
    const got = await collect({ path: '/v1/bots/b' }, 1024);
    assert.equal(got.err, null);
    assert.equal(got.complete, true);
    assert.equal(Buffer.concat(got.chunks).toString(), '{"code":0,"msg":""}');
    assert.equal(got.chunkCalls, got.chunks.length);
    await reusable();
    const again = await collect({ path: '/v1/bots/b' }, 1024);
    assert.equal(Buffer.concat(again.chunks).toString(), '{"code":0,"msg":""}');
    assert.equal(connections, 1, 'the ended answer gave its connection back');
  });

  it('collect-past-the-limit: the chunks so far come back incomplete, and the body streams the rest', async () => {
    const whole = Buffer.alloc(256 * 1024, 7);
    route = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(whole);
    };
    const got = await collect({ path: '/big' }, 1024);
    assert.equal(got.err, null);
    assert.equal(got.complete, false);
    const first = Buffer.concat(got.chunks);
    assert.ok(first.length > 1024 && first.length < whole.length, `${first.length} bytes collected`);
    const rest: Buffer[] = [];
    for await (const chunk of got.res.body) rest.push(chunk as Buffer);
    assert.ok(Buffer.concat([first, ...rest]).equals(whole), 'every byte once, in order');
  });

  it('unread-answer-cut: an answer past the limit that nobody reads yet, then cut, fails its body when it is read, and throws nothing meanwhile', async () => {
    route = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(1024 * 1024) });
      res.write(Buffer.alloc(256 * 1024, 7), () => setTimeout(() => res.socket?.destroy(), 50));
    };
    const got = await collect({ path: '/big-then-cut' }, 1024);
    assert.equal(got.complete, false);
    // The handler is busy elsewhere (a revoked token being invalidated in Redis) while the cut comes.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const read = async () => {
      for await (const _chunk of got.res.body);
    };
    await assert.rejects(read(), (err: unknown) => err instanceof UpstreamError && err.failure === 'reset');
  });

  it('collect-cancelled: cancelling a collect in progress fails it once and aborts the upstream request', async () => {
    route = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"code":0,');
    };
    let calls = 0;
    const failed = await new Promise<Error | null>((resolve, reject) => {
      forwarder.send({ method: 'GET', path: '/stall', headers: {}, body: null }, (err, res) => {
        if (!res) return reject(err);
        res.collect(
          1024,
          () => res.cancel(),
          (e) => {
            calls += 1;
            resolve(e);
          },
        );
      });
    });
    assert.ok(failed instanceof UpstreamError && failed.failure === 'aborted', String(failed));
    await lastRequestClosed;
    assert.equal((seen[0] as Seen).closedEarly, true, 'Coze saw the request aborted');
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(calls, 1);
  });

  it('collect-cut: an answer cut while it is collected fails the collect as a reset', async () => {
    route = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"code":0,', () => res.socket?.destroy());
    };
    const got = await collect({ path: '/cut' }, 1024);
    assert.ok(got.err instanceof UpstreamError && got.err.failure === 'reset', String(got.err));
    assert.equal(got.complete, false);
  });

  it('maps transport codes to the closed vocabulary', () => {
    const withCode = (code: string) => Object.assign(new Error(code), { code });
    assert.equal(toUpstreamError(withCode('ECONNRESET')).failure, 'reset');
    assert.equal(toUpstreamError(withCode('UND_ERR_SOCKET')).failure, 'reset');
    assert.equal(toUpstreamError(withCode('UND_ERR_HEADERS_TIMEOUT')).failure, 'timeout');
    assert.equal(toUpstreamError(withCode('UND_ERR_ABORTED')).failure, 'aborted');
    assert.equal(toUpstreamError(withCode('ECONNREFUSED')).failure, 'connect');
    assert.equal(toUpstreamError(new Error('no code')).failure, 'connect');
    assert.equal(toUpstreamError(withCode('ENOTFOUND')).message, 'upstream connect (ENOTFOUND)');
  });
});
