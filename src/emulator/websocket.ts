import type { IncomingHttpHeaders, Server } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import type { IssuedToken } from './types.js';

export interface WebSocketRecord {
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  sessionName: string | undefined;
  /** Every text frame the client sent, parsed when it was JSON. */
  received: unknown[];
  /** The `chat.update` events received: tests check the forced user id here. */
  chatUpdates: Array<Record<string, unknown>>;
  closed: boolean;
  /** The close code this end saw: 1006 when the connection dropped without a close frame. */
  closeCode: number | undefined;
}

const PATHS = new Set(['/v1/chat', '/v1/audio/speech', '/v1/audio/transcriptions', '/v1/audio/simult_interpretation']);

/**
 * The realtime endpoints (https://www.coze.cn/open/docs/developer_guides/streaming_chat_api) on the emulator's own server: the token is
 * checked from the header or the `authorization` query parameter, frames are echoed back byte
 * for byte, and `chat.update` events are recorded. The `flood` API fault makes the next socket
 * send binary frames for as long as the reader takes them.
 */
export function attachWebSockets(server: Server, deps: { resolve(token: string): IssuedToken | undefined; takeFlood(): boolean; onFloodBytes(n: number): void }) {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const records: WebSocketRecord[] = [];
  let open = 0;

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const fromQuery = url.searchParams.get('authorization') ?? undefined;
    const raw = req.headers.authorization ?? fromQuery ?? '';
    const issued = deps.resolve(/^Bearer (\S+)$/.exec(raw)?.[1] ?? '');
    const record: WebSocketRecord = { path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers, sessionName: issued?.sessionName, received: [], chatUpdates: [], closed: false, closeCode: undefined };
    records.push(record);
    if (!PATHS.has(url.pathname) || !issued) {
      const body = JSON.stringify(issued ? { code: 4200, msg: 'route not found' } : { code: 4100, msg: 'authentication is invalid' });
      socket.end(`HTTP/1.1 ${issued ? 404 : 401} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    const floods = deps.takeFlood();
    wss.handleUpgrade(req, socket, head, (ws) => {
      open += 1;
      if (floods) flood(ws);
      ws.on('message', (data, isBinary) => {
        if (!isBinary) {
          const text = data.toString();
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // Not JSON: recorded as text.
          }
          record.received.push(parsed);
          if (typeof parsed === 'object' && parsed !== null && (parsed as { event_type?: unknown }).event_type === 'chat.update') {
            record.chatUpdates.push(parsed as Record<string, unknown>);
          }
        }
        ws.send(data, { binary: isBinary });
      });
      ws.on('close', (code) => {
        open -= 1;
        record.closed = true;
        record.closeCode = code;
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
    close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
    },
  };
}
