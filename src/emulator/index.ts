import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { handleApi, sendJson, type ApiSettings } from './api.js';
import { readUpload } from './multipart.js';
import { createPacer } from './sse.js';
import { createStore } from './store.js';
import { createTokenEndpoint } from './token-endpoint.js';
import type { ApiFault, EmulatorOptions, ExchangeRecord, IssuedToken, RecordedRequest, StreamPacer, TokenFault } from './types.js';
import { attachWebSockets, type WebSocketRecord } from './websocket.js';

export { generateEmulatorApp } from './keys.js';
export type { ApiFault, BotBehaviour, EmulatorApp, EmulatorKey, EmulatorOptions, ExchangeRecord, IssuedToken, RecordedRequest, StreamPacer, TokenFault, WorkflowBehaviour } from './types.js';
export { speechAudio } from './api-audio.js';
export type { WebSocketFrame, WebSocketRecord } from './websocket.js';

export interface Emulator {
  readonly url: string;
  /** ws://host:port: the realtime endpoints live on the same server. */
  readonly wsUrl: string;
  readonly port: number;
  close(): Promise<void>;
  /** Token exchanges (in all, and per session_name), and connections accepted, since the last reset. */
  readonly stats: { exchanges: number; exchangesBySession: Map<string, number>; connections: number };
  /** Every successful token exchange: the session_context and scope the token was minted with. */
  readonly exchangeLog: ExchangeRecord[];
  readonly tokenRequests: number;
  readonly requests: RecordedRequest[];
  readonly websockets: WebSocketRecord[];
  /** Upload body bytes received so far (proves the gateway streams uploads). */
  readonly uploadBytesReceived: number;
  readonly openStreams: number;
  /** Bytes written so far by `flood` streams and WebSockets. */
  readonly floodBytesWritten: number;
  readonly openWebSockets: number;
  /** Answers a `stall-mid-body` fault left hanging, in order; `closed` settles when their connection closes. */
  readonly stalledBodies: ReadonlyArray<{ closed: Promise<void> }>;
  /** Sends a frame as Coze would on the `index`th recorded WebSocket (relay tests). */
  sendOnWebSocket(index: number, data: Buffer | string, isBinary: boolean): void;
  sessionForToken(token: string): string | undefined;
  /** What a live token is bound to (session, custom_consumer, scope); undefined when unknown or expired. */
  tokenInfo(token: string): IssuedToken | undefined;
  revokeToken(token: string): void;
  setTokenFault(fault: TokenFault | undefined): void;
  setApiFault(fault: ApiFault | undefined): void;
  pace(): StreamPacer;
  unpace(): void;
  reset(): void;
}

const TOKEN_PATH = /^\/api\/permission\/oauth2\/(?:token|account\/[^/]+\/token|enterprise_id\/[^/]+\/token)$/;
const MAX_JSON_BYTES = 25 * 1024 * 1024;

function logId(): string {
  const t = new Date().toISOString().replace(/\D/g, '').slice(0, 17);
  return `${t}${randomBytes(8).toString('hex').toUpperCase()}`;
}

/** Consumes one use of a fault; `times` undefined means forever. */
function take<F extends { times?: number }>(fault: F | undefined, clear: () => void): F | undefined {
  if (!fault) return undefined;
  if (fault.times !== undefined) {
    fault.times -= 1;
    if (fault.times <= 0) clear();
  }
  return fault;
}

/**
 * A real HTTP server standing in for api.coze.cn: the token endpoints, the end-user API with
 * isolation per (app, session_name), Coze's SSE framings, the realtime WebSockets, and fault
 * injection so tests can drive every path. Product code: `demo` and `emulator` ship it.
 */
export async function createEmulator(options: EmulatorOptions): Promise<Emulator> {
  const now = options.now ?? Date.now;
  const tokens = createTokenEndpoint({
    apps: options.apps,
    audience: options.audience ?? 'api.coze.cn',
    now,
    maxJwtWindowSeconds: options.maxJwtWindowSeconds ?? 86400,
    clockSkewSeconds: options.clockSkewSeconds ?? 30,
  });
  const store = createStore();
  const settings: ApiSettings = {
    retrievesBeforeCompletion: options.retrievesBeforeCompletion ?? 2,
    bot: (botId) => options.bots?.[botId] ?? 'echo',
    workflow: (workflowId) => options.workflows?.[workflowId] ?? 'echo',
  };
  const pacing = createPacer();
  const stats = { exchanges: 0, exchangesBySession: new Map<string, number>(), connections: 0 };
  const requests: RecordedRequest[] = [];
  const exchangeLog: ExchangeRecord[] = [];
  const sockets = new Set<Socket>();
  let tokenRequests = 0;
  let openStreams = 0;
  let uploadBytes = 0;
  let floodBytes = 0;
  let tokenFault: TokenFault | undefined;
  let apiFault: ApiFault | undefined;
  const stalledBodies: Array<{ closed: Promise<void> }> = [];

  async function readText(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_JSON_BYTES) throw new Error('body too large');
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  function parseJson(text: string): unknown {
    if (text === '') return undefined;
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }

  async function onToken(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    tokenRequests += 1;
    const fault = take(tokenFault, () => (tokenFault = undefined));
    if (fault?.kind === 'reset') return void req.socket.destroy();
    if (fault?.kind === 'hang') return;
    if (fault?.kind === 'delay') await new Promise((r) => setTimeout(r, fault.ms));
    if (fault?.kind === 'status') return sendJson(res, fault.status, { error_code: 'internal_error', error_message: 'Service internal error.' }, id);
    if (fault?.kind === 'error-code') {
      return sendJson(res, fault.httpStatus ?? options.tokenStatus ?? 400, { error_code: fault.errorCode, error_message: `injected ${fault.errorCode}` }, id);
    }
    const result = await tokens.exchange(req, parseJson(await readText(req)));
    if (!result.ok) return sendJson(res, options.tokenStatus ?? 400, { error_code: result.errorCode, error_message: result.errorMessage }, id);
    stats.exchanges += 1;
    exchangeLog.push(result.record);
    stats.exchangesBySession.set(result.sessionName, (stats.exchangesBySession.get(result.sessionName) ?? 0) + 1);
    sendJson(res, 200, { access_token: result.accessToken, expires_in: result.expiresIn, token_type: 'Bearer' }, id);
  }

  async function onApi(req: IncomingMessage, res: ServerResponse, id: string, url: URL): Promise<void> {
    const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const issued = tokens.resolve(bearer);
    const multipart = /^multipart\/form-data/i.test(req.headers['content-type'] ?? '');
    const record: RecordedRequest = { method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers, sessionName: issued?.sessionName };
    requests.push(record);
    if (!issued) {
      req.resume();
      return sendJson(res, 200, { code: 4100, msg: 'authentication is invalid' }, id);
    }
    const fault = take(apiFault, () => (apiFault = undefined));
    if (fault?.kind === 'reset') return void req.socket.destroy();
    if (fault?.kind === 'hang') return;
    if (fault?.kind === 'flood') {
      req.resume();
      return flood(res);
    }
    if (fault?.kind === 'stall-mid-body') {
      req.resume();
      return stallBody(res, id, fault.partialBytes ?? 16);
    }
    if (fault?.kind === 'status') {
      req.resume();
      return sendJson(res, fault.status, { code: 5000, msg: 'injected upstream failure' }, id);
    }
    if (fault?.kind === 'code') {
      req.resume();
      return sendJson(res, fault.httpStatus ?? 200, { code: fault.code, msg: fault.msg }, id);
    }
    // Uploads are streamed and counted, never held (a multipart body may be hundreds of MiB).
    const upload = multipart ? await readUpload(req, (n) => (uploadBytes += n)) : undefined;
    if (!multipart) {
      record.rawBody = await readText(req);
      record.body = parseJson(record.rawBody);
    }
    await handleApi({
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      body: record.body,
      upload,
      owner: { appId: issued.appId, sessionName: issued.sessionName },
      allowedBots: issued.botIds,
      res,
      store,
      pacing,
      logId: id,
      fault: fault?.kind === 'reset-mid-stream' || fault?.kind === 'stall-mid-stream' ? { mode: fault.kind === 'reset-mid-stream' ? 'reset' : 'stall', afterEvents: fault.afterEvents, partialBytes: fault.partialBytes } : undefined,
      settings,
    });
  }

  /** A JSON answer cut short by a stalled network: its headers and a few bytes, then silence. */
  function stallBody(res: ServerResponse, id: string, partialBytes: number): void {
    const body = Buffer.from(JSON.stringify({ code: 0, msg: '', data: { stalled: true }, detail: { logid: id } }));
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(body.length), 'x-tt-logid': id });
    res.write(body.subarray(0, Math.min(partialBytes, body.length - 1)));
    stalledBodies.push({ closed: new Promise<void>((resolve) => res.once('close', () => resolve())) });
  }

  /** Writes events only while the socket accepts them: a reader that stops reading stops it. */
  function flood(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-tt-logid': logId() });
    const event = Buffer.from(`event:conversation.message.delta\ndata:${JSON.stringify({ content: 'x'.repeat(16 * 1024) })}\n\n`);
    const pump = () => {
      while (!res.destroyed && !res.writableEnded) {
        floodBytes += event.length;
        if (!res.write(event)) return void res.once('drain', pump);
      }
    };
    pump();
  }

  const server = http.createServer((req, res) => {
    const id = logId();
    const url = new URL(req.url ?? '/', 'http://emulator');
    // Streams are counted from the moment they start until either side closes them.
    const originalWriteHead = res.writeHead.bind(res);
    res.writeHead = ((...args: Parameters<ServerResponse['writeHead']>) => {
      const headers = args.find((a) => typeof a === 'object' && a !== null) as Record<string, string> | undefined;
      if (headers?.['content-type']?.startsWith('text/event-stream')) {
        openStreams += 1;
        res.once('close', () => (openStreams -= 1));
      }
      return originalWriteHead(...args);
    }) as ServerResponse['writeHead'];
    const work = req.method === 'POST' && TOKEN_PATH.test(url.pathname) ? onToken(req, res, id) : onApi(req, res, id, url);
    work.catch(() => {
      if (!res.headersSent) sendJson(res, 500, { code: 5000, msg: 'emulator internal error' }, id);
      else res.destroy();
    });
  });
  server.on('connection', (socket) => {
    stats.connections += 1;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const ws = attachWebSockets(server, {
    resolve: (token) => tokens.resolve(token),
    store,
    settings,
    logId,
    takeFault: () => (apiFault?.kind === 'flood' || apiFault?.kind === 'refuse-upgrade' ? take(apiFault, () => (apiFault = undefined)) : undefined),
    onFloodBytes: (n) => (floodBytes += n),
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const host = options.host ?? '127.0.0.1';

  return {
    url: `http://${host}:${port}`,
    wsUrl: `ws://${host}:${port}`,
    port,
    stats,
    exchangeLog,
    requests,
    get websockets() {
      return ws.records;
    },
    get tokenRequests() {
      return tokenRequests;
    },
    get uploadBytesReceived() {
      return uploadBytes;
    },
    get openStreams() {
      return openStreams;
    },
    get floodBytesWritten() {
      return floodBytes;
    },
    get openWebSockets() {
      return ws.open;
    },
    stalledBodies,
    sendOnWebSocket(index, data, isBinary) {
      const record = ws.records[index];
      if (!record) throw new Error(`no WebSocket #${index}`);
      ws.send(record, Buffer.from(data), isBinary);
    },
    sessionForToken: (token) => tokens.resolve(token)?.sessionName,
    tokenInfo: (token) => tokens.resolve(token),
    revokeToken: (token) => tokens.revoke(token),
    setTokenFault(fault) {
      tokenFault = fault ? { ...fault } : undefined;
    },
    setApiFault(fault) {
      apiFault = fault ? { ...fault } : undefined;
    },
    pace: () => pacing.start(),
    unpace: () => pacing.stop(),
    reset() {
      requests.length = 0;
      stalledBodies.length = 0;
      ws.records.length = 0;
      stats.exchanges = 0;
      stats.exchangesBySession.clear();
      stats.connections = 0;
      exchangeLog.length = 0;
      tokenRequests = 0;
      uploadBytes = 0;
    },
    async close() {
      pacing.stop();
      ws.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
