import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { TokenCache } from '../coze/token-cache.js';
import { GatewayError } from '../errors.js';
import { scrubRequestHeaders } from '../http/headers.js';
import { sessionHash, type Logger } from '../log/logger.js';
import { admit, type AdmissionTrace, type AdmitDeps } from './admit.js';
import { answerUpgrade, rejectUpgrade } from './upgrade-reject.js';
import { CozeUpgradeRefusal, dialCoze } from './websocket-dial.js';

export interface WebSocketProxyDeps extends AdmitDeps {
  tokens: TokenCache;
  logger: Logger;
  /** coze.wsBaseUrl: the only host WebSockets are ever relayed to. */
  wsBaseUrl: string;
  enforceUserId: boolean;
  trustedHeaderName: string | undefined;
  connectTimeoutMs: number;
  isDraining(): boolean;
}

export interface WebSocketProxy {
  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Sends a close frame to every relayed client (and its upstream); resolves once all are closed. */
  closeAll(code: number, reason: string): Promise<void>;
  readonly size: number;
}

/** A frame queued beyond this for a slow peer stops reading from the other side until it drains. */
const HIGH_WATER_BYTES = 1024 * 1024;

/**
 * Sends one frame on, with backpressure: while `to` holds more than HIGH_WATER_BYTES unsent,
 * `from` is paused, so a reader that stops reading stops its sender instead of filling memory.
 */
function relayFrame(from: WebSocket, to: WebSocket, data: RawData, isBinary: boolean): void {
  if (to.readyState !== WebSocket.OPEN) return;
  to.send(data, { binary: isBinary }, () => {
    if (from.isPaused && to.bufferedAmount < HIGH_WATER_BYTES / 2) from.resume();
  });
  if (to.bufferedAmount > HIGH_WATER_BYTES && !from.isPaused) from.pause();
}

function startsLikeObject(bytes: Buffer): boolean {
  for (const byte of bytes) {
    if (byte === 0x7b) return true;
    // Leading JSON whitespace (space, tab, LF, CR) is skipped; anything else is not an event.
    if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) return false;
  }
  return false;
}

/** WebSocket close codes a relay may forward as they are; others become 1011/1000. */
function forwardableCode(code: number): number {
  return code === 1000 || (code >= 1001 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999) ? code : 1000;
}

const HEARTBEAT_MS = 30_000;

/**
 * The realtime APIs (coze-protocol.md section 6). The upgrade is admitted like any request (the
 * browser's credential may come as the `authorization` query parameter), then the gateway opens
 * the upstream socket with the session's token in both the header and the query, and only then
 * accepts the client, so a refusal is an HTTP answer rather than a dropped socket. Frames pass
 * untouched, except `chat.update`, whose user id is forced to the session.
 */
export function createWebSocketProxy(deps: WebSocketProxyDeps): WebSocketProxy {
  const server = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
  const cozeLogIds = new WeakMap<IncomingMessage, string>();
  server.on('headers', (headers, req) => {
    const logId = cozeLogIds.get(req);
    if (logId) headers.push(`X-Tt-Logid: ${logId}`);
  });
  const live = new Set<{ client: WebSocket; upstream: WebSocket }>();
  const dropHeaders = deps.trustedHeaderName ? [deps.trustedHeaderName.toLowerCase()] : [];

  async function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string, trace: AdmissionTrace): Promise<void> {
    if (deps.isDraining()) throw new GatewayError('draining');
    const admission = await admit(deps, req, trace, { acceptQueryCredential: true });
    if (!admission.route.startsWith('ws.')) throw new GatewayError('route-forbidden', { detail: 'This route does not accept WebSocket upgrades.' });

    const headers = scrubRequestHeaders(req.headers, { dropAlso: dropHeaders });
    // The ws client sets the handshake headers itself.
    for (const name of ['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-protocol']) delete headers[name];
    headers['x-request-id'] = requestId;

    const pending: Array<{ data: RawData; isBinary: boolean }> = [];
    let client: WebSocket | undefined;
    const { upstream, logId } = await dialCoze(deps, {
      sessionName: admission.sessionName,
      target(accessToken) {
        const query = new URLSearchParams(admission.query);
        query.set('authorization', `Bearer ${accessToken}`);
        return { url: `${deps.wsBaseUrl}${admission.path}?${query.toString()}`, headers: { ...(headers as Record<string, string>), authorization: `Bearer ${accessToken}` } };
      },
      onMessage(from, data, isBinary) {
        if (client) relayFrame(from, client, data, isBinary);
        else pending.push({ data, isBinary });
      },
      client: socket,
    });

    if (socket.destroyed) {
      upstream.terminate();
      return;
    }
    // Coze's log id on the client's handshake too, as Coze's own handshake carries it.
    if (logId) cozeLogIds.set(req, logId);
    server.handleUpgrade(req, socket, head, (accepted) => {
      client = accepted;
      const pair = { client: accepted, upstream };
      live.add(pair);
      deps.metrics.activeWebsockets.inc();
      const opened = Date.now();
      for (const m of pending.splice(0)) relayFrame(upstream, accepted, m.data, m.isBinary);

      accepted.on('message', (data, isBinary) => {
        const frame = rewriteClientEvent(data, admission.route, admission.sessionName);
        // A chat.update the gateway cannot check (too deeply nested) never reaches Coze.
        if (frame === undefined) accepted.close(1008, 'chat.update could not be checked');
        else relayFrame(accepted, upstream, frame, isBinary);
      });

      let alive = true;
      accepted.on('pong', () => {
        alive = true;
      });
      const heartbeat = setInterval(() => {
        if (!alive) accepted.terminate();
        alive = false;
        accepted.ping();
      }, HEARTBEAT_MS);

      let finished = false;
      const finish = (code: number, reason: Buffer) => {
        if (finished) return;
        finished = true;
        clearInterval(heartbeat);
        live.delete(pair);
        deps.metrics.activeWebsockets.dec();
        const forward = forwardableCode(code);
        if (accepted.readyState === WebSocket.OPEN) accepted.close(forward, reason);
        if (upstream.readyState === WebSocket.OPEN) upstream.close(forward, reason);
        // A peer that never answers the close frame is cut, so no socket is left open.
        setTimeout(() => {
          accepted.terminate();
          upstream.terminate();
        }, 2000).unref();
        deps.logger.info({ requestId, route: admission.route, path: admission.path, status: 101, durationMs: Date.now() - opened, source: admission.identity.source, session: sessionHash(admission.sessionName), closeCode: code, cozeLogId: logId });
      };
      accepted.on('close', finish);
      upstream.on('close', finish);
      accepted.on('error', () => finish(1011, Buffer.alloc(0)));
      upstream.on('error', () => finish(1011, Buffer.alloc(0)));
    });
  }

  /**
   * Binary frames are inspected too: Coze may decode either frame type as a JSON event, and a
   * chat.update sent as binary must not slip past the user id rule. Audio travels as base64 in
   * JSON text events, so the check rarely costs more than a look at the first byte.
   */
  function rewriteClientEvent(data: RawData, route: string, sessionName: string): RawData | undefined {
    if (!deps.enforceUserId || route !== 'ws.chat') return data;
    const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]);
    if (!startsLikeObject(bytes)) return data;
    // The native parser tells the event type fast (audio frames are large); only a chat.update
    // goes through the lossless rewrite, which keeps every byte but the user id.
    let event: unknown;
    try {
      event = JSON.parse(bytes.toString('utf8'));
    } catch {
      return data;
    }
    if (typeof event !== 'object' || event === null || (event as { event_type?: unknown }).event_type !== 'chat.update') return data;
    return deps.bodyPolicy.applyToChatUpdate(bytes, sessionName);
  }

  return {
    onUpgrade(req, socket, head) {
      const requestId = randomUUID();
      const trace: AdmissionTrace = { route: 'unmatched', path: '-', source: undefined, sessionName: undefined };
      socket.on('error', () => undefined);
      upgrade(req, socket, head, requestId, trace).catch((err: unknown) => {
        const refusal = err instanceof CozeUpgradeRefusal ? err : undefined;
        deps.logger.info({ requestId, route: trace.route, path: trace.path, status: refusal ? 401 : err instanceof GatewayError ? err.status : 500, source: trace.source, upgrade: true, cozeLogId: refusal?.logId });
        if (socket.destroyed) return;
        // Coze's own refusal of a fresh token reaches the client as Coze gave it (no X-Gateway-Error).
        if (refusal) answerUpgrade(socket, 401, { 'content-type': 'application/json; charset=utf-8', 'x-request-id': requestId, ...(refusal.logId ? { 'x-tt-logid': refusal.logId } : {}) }, refusal.body);
        else rejectUpgrade(socket, req, err, requestId);
      });
    },
    async closeAll(code, reason) {
      const closing = [...live].map(
        ({ client }) =>
          new Promise<void>((resolve) => {
            client.once('close', () => resolve());
            client.close(code, reason);
          }),
      );
      await Promise.all(closing);
    },
    get size() {
      return live.size;
    },
  };
}
