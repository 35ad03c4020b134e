import { STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { ApiSettings } from './api-context.js';
import { startRealtimeSession } from './realtime.js';
import type { Store } from './store.js';
import type { IssuedToken, UpgradeFault } from './types.js';

export interface WebSocketFrame {
  data: Buffer;
  isBinary: boolean;
}

export interface WebSocketRecord {
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  sessionName: string | undefined;
  /** Every frame the client sent, byte for byte. */
  frames: WebSocketFrame[];
  /** Every frame the client sent that parsed as a JSON event. */
  received: unknown[];
  /** The `chat.update` events received: tests check the forced user id here. */
  chatUpdates: Array<Record<string, unknown>>;
  /** Every frame this side sent, byte for byte. */
  sent: WebSocketFrame[];
  /** The X-Tt-Logid of the handshake answer. */
  logId: string;
  closed: boolean;
  /** The close code this end saw: 1006 when the connection dropped without a close frame. */
  closeCode: number | undefined;
}

const PATHS = new Set(['/v1/chat', '/v1/audio/speech', '/v1/audio/transcriptions', '/v1/audio/simult_interpretation']);

export interface WebSocketDeps {
  resolve(token: string): IssuedToken | undefined;
  store: Store;
  settings: ApiSettings;
  logId(): string;
  /** A `flood` or `refuse-upgrade` fault for this handshake, if one is set. */
  takeFault(): UpgradeFault | undefined;
  onFloodBytes(n: number): void;
}

/**
 * The realtime endpoints (https://www.coze.cn/open/docs/developer_guides/streaming_chat_api) on
 * the emulator's own server. The token is checked from the header or the `authorization` query
 * parameter; a missing, unknown or revoked one gets HTTP 401 with Coze's `{code: 4100}` body.
 * Every answer, the 101 included, carries X-Tt-Logid. Events are served by realtime.ts. The
 * `flood` API fault makes the next socket send binary frames for as long as the reader takes them.
 */
export function attachWebSockets(server: Server, deps: WebSocketDeps) {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const records: WebSocketRecord[] = [];
  const sockets = new Map<WebSocketRecord, WebSocket>();
  const logIds = new WeakMap<IncomingMessage, string>();
  let open = 0;

  wss.on('headers', (headers, req) => headers.push(`X-Tt-Logid: ${logIds.get(req) ?? ''}`));

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const fromQuery = url.searchParams.get('authorization') ?? undefined;
    const raw = req.headers.authorization ?? fromQuery ?? '';
    const issued = deps.resolve(/^Bearer (\S+)$/.exec(raw)?.[1] ?? '');
    const logId = deps.logId();
    const record: WebSocketRecord = { path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers, sessionName: issued?.sessionName, frames: [], received: [], chatUpdates: [], sent: [], logId, closed: false, closeCode: undefined };
    records.push(record);
    const refuse = (status: number, code: number, msg: string) => {
      const body = JSON.stringify({ code, msg });
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Refused'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Tt-Logid: ${logId}\r\nConnection: close\r\n\r\n${body}`);
    };
    if (!issued) return refuse(401, 4100, 'authentication is invalid');
    if (!PATHS.has(url.pathname)) return refuse(404, 4200, 'route not found');
    const fault = deps.takeFault();
    if (fault?.kind === 'refuse-upgrade') return refuse(fault.status ?? 401, fault.code ?? 4100, 'authentication is invalid');
    const floods = fault?.kind === 'flood';
    logIds.set(req, logId);
    wss.handleUpgrade(req, socket, head, (ws) => {
      open += 1;
      sockets.set(record, ws);
      const send = (data: Buffer, isBinary: boolean) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        record.sent.push({ data, isBinary });
        ws.send(data, { binary: isBinary });
      };
      if (floods) flood(ws);
      const session = floods
        ? undefined
        : startRealtimeSession({
            path: url.pathname,
            query: url.searchParams,
            owner: { appId: issued.appId, sessionName: issued.sessionName },
            allowedBots: issued.botIds,
            store: deps.store,
            settings: deps.settings,
            logId,
            send: (event) => send(Buffer.from(JSON.stringify(event)), false),
          });
      ws.on('message', (data: RawData, isBinary) => {
        const bytes = toBuffer(data);
        record.frames.push({ data: bytes, isBinary });
        noteEvent(record, bytes);
        session?.receive(bytes);
      });
      ws.on('close', (code) => {
        open -= 1;
        record.closed = true;
        record.closeCode = code;
        sockets.delete(record);
      });
      ws.on('error', () => ws.terminate());
    });
  });

  /** Binary frames as fast as the reader takes them, never queueing more than 1 MiB here. */
  function flood(ws: WebSocket): void {
    const frame = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 1024 * 1024) {
        deps.onFloodBytes(frame.length);
        ws.send(frame, { binary: true }, (err) => {
          if (!err) pump();
        });
      }
    };
    pump();
  }

  return {
    records,
    get open() {
      return open;
    },
    /** Sends a frame of the test's choosing on an open socket (the byte-for-byte relay tests). */
    send(record: WebSocketRecord, data: Buffer, isBinary: boolean): void {
      const ws = sockets.get(record);
      if (!ws || ws.readyState !== WebSocket.OPEN) throw new Error('that WebSocket is not open');
      record.sent.push({ data, isBinary });
      ws.send(data, { binary: isBinary });
    },
    close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
    },
  };
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}

function noteEvent(record: WebSocketRecord, bytes: Buffer): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    return;
  }
  record.received.push(parsed);
  if (typeof parsed === 'object' && parsed !== null && (parsed as { event_type?: unknown }).event_type === 'chat.update') record.chatUpdates.push(parsed as Record<string, unknown>);
}
