import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json(): { code: number; msg: string; detail?: { logid?: string } };
}

/** A raw request over a real socket, so nothing (fetch, SDK) normalises what we send. */
export function request(url: string, options: { method?: string; path: string; headers?: Record<string, string | string[]>; body?: string | Buffer }): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // Host, port and path given apart: a URL string would be normalised (`..` resolved) on the way out.
    const { hostname, port } = new URL(url);
    const req = http.request({ hostname, port, path: options.path, method: options.method ?? 'GET', headers: options.headers ?? {}, agent: false }, (res) => {
      collectResponse(res).then(resolve, reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Reads a whole response off a node:http IncomingMessage. */
export function collectResponse(res: http.IncomingMessage): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('error', reject);
    res.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) as ReturnType<RawResponse['json']> });
    });
  });
}

/** Another host on this machine, counting every request: the gateway must never connect to it. */
export async function startDecoy(): Promise<{ address: string; readonly hits: number; close(): Promise<void> }> {
  let hits = 0;
  const server = http.createServer((_req, res) => {
    hits += 1;
    res.end('{"keys":[]}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    get hits() {
      return hits;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** The gateway's own error: exact status, X-Gateway-Error, the Coze envelope, no stack trace. */
export function assertEnvelope(res: RawResponse, status: number, reason: string): void {
  assert.equal(res.status, status, `${reason}: ${res.body}`);
  assert.equal(res.headers['x-gateway-error'], reason);
  const body = res.json();
  assert.ok(Number.isInteger(body.code) && body.code !== 0);
  assert.ok(body.msg.length > 10);
  assert.equal(body.detail?.logid, res.headers['x-request-id']);
  assert.ok(!/at \w+ \(|node:internal|\.ts:\d+/.test(res.body), 'no stack trace');
}

/**
 * Bytes written as-is on a fresh TCP connection; resolves with everything the server sent
 * before it closed the connection (or `waitMs` passed), parsed as one HTTP response.
 */
export function rawExchange(url: string, bytes: string | Buffer, waitMs = 3000): Promise<RawResponse & { raw: string; closed: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    let closed = false;
    const timer = setTimeout(() => finish(), waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('connect', () => socket.write(bytes));
    let done = false;
    function finish(): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      try {
        resolve({ ...parseResponse(Buffer.concat(chunks).toString('latin1')), closed });
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
  });
}

/**
 * Bytes written as-is on one fresh TCP connection (requests pipelined back to back); resolves
 * once `count` whole responses (each framed by Content-Length) have arrived, or the server closed
 * the connection, with the responses so far and whether it was closed by then.
 */
export function pipelinedExchange(url: string, bytes: string | Buffer, count: number): Promise<{ responses: RawResponse[]; closed: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    let raw = '';
    const responses: RawResponse[] = [];
    const finish = (closed: boolean) => {
      socket.destroy();
      resolve({ responses, closed });
    };
    socket.on('data', (c: Buffer) => {
      raw += c.toString('latin1');
      for (;;) {
        const split = raw.indexOf('\r\n\r\n');
        if (split === -1) return;
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(raw.slice(0, split))?.[1] ?? 0);
        if (raw.length < split + 4 + length) return;
        responses.push(parseResponse(raw.slice(0, split + 4 + length)));
        raw = raw.slice(split + 4 + length);
        if (responses.length === count) return finish(false);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => finish(true));
    socket.on('connect', () => socket.write(bytes));
  });
}

function parseResponse(raw: string): RawResponse & { raw: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = split === -1 ? raw : raw.slice(0, split);
  const body = split === -1 ? '' : raw.slice(split + 4);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: http.IncomingHttpHeaders = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  return { raw, status, headers, body, json: () => JSON.parse(body) as ReturnType<RawResponse['json']> };
}
