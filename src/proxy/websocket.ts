import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { TokenCache } from '../coze/token-cache.js';
import { GatewayError } from '../errors.js';
import { scrubRequestHeaders } from '../http/headers.js';
import type { Logger } from '../log/logger.js';
import { admit, type Admission, type AdmissionTrace, type AdmitDeps } from './admit.js';
import { watchClientLeaving } from './upgrade-client.js';
import { createUpgradeRecord, type UpgradeRecord } from './upgrade-record.js';
import { answerUpgrade, rejectUpgrade } from './upgrade-reject.js';
import { ClientLeft, CozeUpgradeRefusal, dialCoze } from './websocket-dial.js';
import { checkHandshake } from './websocket-handshake.js';
import { keepAlive } from './websocket-heartbeat.js';
import type { UsageService } from '../usage/usage-service.js';

export interface WebSocketProxyDeps extends AdmitDeps {
  tokens: TokenCache;
  logger: Logger;
  /** The log's keyed session pseudonym, the same the HTTP lines carry (logger.ts createSessionHasher). */
  sessionHash(sessionName: string): string;
  /** coze.wsBaseUrl: the only host WebSockets are ever relayed to. */
  wsBaseUrl: string;
  /** policy.forwardHeaders: names forwarded beyond the built-in allowlist (headers.ts). */
  forwardHeaders: readonly string[];
  connectTimeoutMs: number;
  isDraining(): boolean;
  /** Reads the usage of realtime chats from Coze's events (issue 18). */
  usage?: Pick<UsageService, 'track'>;
  /** How often both ends are pinged: HEARTBEAT_MS unless a test shortens it. */
  heartbeatMs?: number | undefined;
}

export interface WebSocketProxy {
  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Sends a close frame to both ends of every relayed socket; returns how many were told. */
  closeAll(code: number, reason: string): number;
  /** Cuts every client socket (relayed or still being dialled) and its upstream; returns how many. */
  terminateAll(): number;
  /** Resolves once no client socket of an upgrade is open any more. */
  idle(): Promise<void>;
  /** Relayed sockets (pairs) open now. */
  readonly size: number;
}

/** A frame queued beyond this for a slow peer stops reading from the other side until it drains. */
const HIGH_WATER_BYTES = 1024 * 1024;

/**
 * Sends one frame on, with backpressure: while `to` holds more than HIGH_WATER_BYTES unsent,
 * `from` is paused, so a reader that stops reading stops its sender instead of filling memory.
 */
function relayFrame(from: WebSocket, to: WebSocket, data: RawData, isBinary: boolean): number {
  if (to.readyState !== WebSocket.OPEN) return 0;
  to.send(data, { binary: isBinary }, () => {
    if (from.isPaused && to.bufferedAmount < HIGH_WATER_BYTES / 2) from.resume();
  });
  if (to.bufferedAmount > HIGH_WATER_BYTES && !from.isPaused) from.pause();
  return payloadLength(data);
}

/** A frame's payload bytes, for the log line's bytesIn and bytesOut. */
function payloadLength(data: RawData): number {
  if (Buffer.isBuffer(data)) return data.length;
  return Array.isArray(data) ? data.reduce((sum, chunk) => sum + chunk.length, 0) : data.byteLength;
}

/** WebSocket close codes a relay may forward as they are; others become 1000. */
function forwardableCode(code: number): number {
  return code === 1000 || (code >= 1001 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999) ? code : 1000;
}

/**
 * A frame's bytes. Binary frames are inspected too: Coze may decode either frame type as a JSON
 * event, and a chat.update sent as binary must not slip past the user id rule.
 */
function frameBytes(data: RawData): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]);
}

/** Which end of a relayed socket closed (or failed) first. */
type Side = 'client' | 'coze';

const LOST_REASON: Record<Side, string> = { coze: 'the Coze connection was lost', client: 'the client connection was lost' };
const FAULT_REASON: Record<Side, string> = { coze: 'Coze broke the WebSocket protocol', client: 'the client broke the WebSocket protocol' };

/**
 * The close frame the other end is sent when one end closes with `code` (`failed`: ws caught a
 * fault in that end's frames, or its socket errored). 1006 means the TCP connection dropped
 * without a close frame, and 1006 may never be sent in one (RFC 6455 section 7.4.1): the client
 * learns that Coze vanished as 1011 (server error), Coze learns that the client vanished as 1001
 * (going away). A protocol fault (1002, 1007) was the failing end's own, and ws has closed that
 * end with the code; the other end did nothing wrong and learns of it as of a drop. A frame
 * over the size limit is 1009 to both ends (issue 16). A code received in a close frame passes
 * as it is: frames are relayed unchanged, so what one end objects to came from the other. 1005
 * (a close frame with no code) is a normal close.
 */
export function relayClose(closedBy: Side, code: number, reason: Buffer | string, failed: boolean): { code: number; reason: Buffer | string } {
  const gone = closedBy === 'coze' ? 1011 : 1001;
  if (code === 1006) return { code: gone, reason: LOST_REASON[closedBy] };
  if (failed && (code === 1002 || code === 1007)) return { code: gone, reason: FAULT_REASON[closedBy] };
  return { code: forwardableCode(code), reason };
}

/** A failed socket's close code: the ws library names protocol faults; anything else is a drop. */
function errorCloseCode(err: Error & { code?: string }): number {
  if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || err.code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH') return 1009;
  if (err.code === 'WS_ERR_INVALID_UTF8') return 1007;
  if (err.code?.startsWith('WS_ERR_')) return 1002;
  return 1006;
}

/** A peer that never answers a close frame is cut after this long, so no socket is left open. */
const CLOSE_BACKSTOP_MS = 2000;

/** Both ends are pinged this often; one that misses a ping is cut (websocket-heartbeat.ts). */
const HEARTBEAT_MS = 30_000;

/**
 * The realtime APIs (https://www.coze.cn/open/docs/developer_guides/streaming_chat_api). The
 * upgrade is admitted like any request (the browser's credential may come as the
 * `authorization` query parameter), then the gateway opens
 * the upstream socket with the session's token in both the header and the query, and only then
 * accepts the client, so a refusal is an HTTP answer rather than a dropped socket. Frames pass
 * untouched, except `chat.update`, whose user id is forced to the session.
 */
export function createWebSocketProxy(deps: WebSocketProxyDeps): WebSocketProxy {
  const server = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
  const records = new WeakMap<IncomingMessage, UpgradeRecord>();
  server.on('headers', (headers, req) => {
    const logId = records.get(req)?.cozeLogId;
    if (logId) headers.push(`X-Tt-Logid: ${logId}`);
  });
  // checkHandshake refuses what ws would; should the two ever disagree, the answer is still ours.
  server.on('wsClientError', (err, socket, req) => {
    untrackClientSocket(socket);
    const refusal = new GatewayError('bad-request', { detail: `(${err.message})` });
    records.get(req)?.refused(refusal.status);
    rejectUpgrade(socket, req, refusal);
  });
  const live = new Set<{ client: WebSocket; upstream: WebSocket }>();
  // Every client socket from its upgrade request until it closes, relayed or still being dialled:
  // a drain waits for these and cuts them at its deadline (issue 16).
  const clientSockets = new Set<Duplex>();
  let idleWaiters: Array<() => void> = [];

  async function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string, trace: AdmissionTrace, record: UpgradeRecord, stopWatch: () => void): Promise<void> {
    if (deps.isDraining()) throw new GatewayError('draining');
    // Before anything is spent on it: ws answers a malformed handshake itself, without calling back.
    checkHandshake(req);
    const admission = await admit(deps, req, trace, { acceptQueryCredential: true, transport: 'websocket' });
    // The session's slot is held for the socket's whole life. The client may have left while
    // admission waited (a JWKS fetch, Redis): its 'close' has been and gone, so the slot goes back now.
    if (socket.destroyed) admission.release();
    else socket.once('close', admission.release);
    // Only a relayed socket keeps its count against the budgets: one refused or given up before
    // (a drain, a failed mint or dial, a client gone) never reached the caller as a WebSocket.
    try {
      await relay(req, socket, head, requestId, admission, record, stopWatch);
    } catch (err) {
      admission.uncount();
      throw err;
    }
  }

  /** Dials Coze for an admitted upgrade, then accepts the client and relays the pair. */
  async function relay(req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string, admission: Admission, record: UpgradeRecord, stopWatch: () => void): Promise<void> {
    // Nothing is minted or dialled for a client gone.
    if (socket.destroyed) throw new ClientLeft();
    const { endpoint } = admission;

    // The ws client sets the handshake headers itself; the allowlist never passes them.
    const headers = scrubRequestHeaders(req.headers, { forward: deps.forwardHeaders });
    delete headers['content-length'];
    headers['x-request-id'] = requestId;

    const pending: Array<{ data: RawData; isBinary: boolean }> = [];
    let client: WebSocket | undefined;
    const bytes = { in: 0, out: 0 };
    const usage = deps.usage?.track(admission.endpoint, admission.sessionName, admission.tokenKey);
    const { upstream, logId } = await dialCoze(deps, {
      tokenKey: admission.tokenKey,
      target(accessToken) {
        const query = new URLSearchParams(admission.query);
        query.set('authorization', `Bearer ${accessToken}`);
        return { url: `${deps.wsBaseUrl}${admission.path}?${query.toString()}`, headers: { ...(headers as Record<string, string>), authorization: `Bearer ${accessToken}` } };
      },
      onMessage(from, data, isBinary) {
        if (client) bytes.out += relayFrame(from, client, data, isBinary);
        else pending.push({ data, isBinary });
        if (usage && Buffer.isBuffer(data)) usage.onFrame(data);
      },
      client: socket,
    });

    if (socket.destroyed) {
      upstream.terminate();
      throw new ClientLeft();
    }
    // A drain begun while Coze was dialled would wait for this relay, or miss it in its 1001
    // broadcast and cut it at the deadline: the client, not answered yet, is refused as at the door.
    if (deps.isDraining()) {
      upstream.on('error', () => undefined);
      upstream.close(1001, 'gateway shutting down');
      setTimeout(() => upstream.terminate(), CLOSE_BACKSTOP_MS).unref();
      throw new GatewayError('draining');
    }
    // Coze's log id on the client's handshake too, as Coze's own handshake carries it.
    record.cozeLogId = logId;
    // Until ws hands the client over, nothing else watches its socket: should ws refuse the
    // handshake after all (it answers and closes without calling back), Coze's socket goes too.
    const onClientGone = () => {
      upstream.terminate();
      admission.uncount();
    };
    socket.once('close', onClientGone);
    stopWatch();
    server.handleUpgrade(req, socket, head, (accepted) => {
      socket.off('close', onClientGone);
      client = accepted;
      record.accepted();
      const pair = { client: accepted, upstream };
      live.add(pair);
      deps.metrics.activeWebsockets.inc();
      for (const m of pending.splice(0)) bytes.out += relayFrame(upstream, accepted, m.data, m.isBinary);

      const rewriteEvent = endpoint.rules.rewriteEvent;
      accepted.on('message', (data, isBinary) => {
        const frame = rewriteEvent ? rewriteEvent(frameBytes(data), admission.sessionName) : data;
        // An event the gateway cannot check (ambiguous, too deeply nested) never reaches Coze.
        if (frame === undefined) accepted.close(1008, 'event could not be checked');
        else bytes.in += relayFrame(accepted, upstream, frame, isBinary);
      });

      // A dead end is cut: its 'close' (1006) then tells the other end as for any drop.
      const stopHeartbeat = keepAlive([accepted, upstream], deps.heartbeatMs ?? HEARTBEAT_MS, (dead) => dead.terminate());

      let finished = false;
      const finish = (closedBy: Side, code: number, reason: Buffer | string, failed = false) => {
        if (finished) return;
        finished = true;
        stopHeartbeat();
        live.delete(pair);
        deps.metrics.activeWebsockets.dec();
        const other = closedBy === 'client' ? upstream : accepted;
        const told = relayClose(closedBy, code, reason, failed);
        if (other.readyState === WebSocket.OPEN) other.close(told.code, told.reason);
        setTimeout(() => {
          accepted.terminate();
          upstream.terminate();
        }, CLOSE_BACKSTOP_MS).unref();
        usage?.end();
        record.closed({ closeCode: code, closedBy, bytesIn: bytes.in, bytesOut: bytes.out, tokens: usage?.counted });
      };
      accepted.on('close', (code, reason) => finish('client', code, reason));
      upstream.on('close', (code, reason) => finish('coze', code, reason));
      accepted.on('error', (err) => finish('client', errorCloseCode(err), '', true));
      upstream.on('error', (err) => finish('coze', errorCloseCode(err), '', true));
    });
  }

  function trackClientSocket(socket: Duplex): void {
    if (socket.destroyed) return;
    clientSockets.add(socket);
    socket.once('close', () => untrackClientSocket(socket));
  }

  function untrackClientSocket(socket: Duplex): void {
    if (!clientSockets.delete(socket) || clientSockets.size > 0) return;
    for (const resolve of idleWaiters) resolve();
    idleWaiters = [];
  }

  return {
    onUpgrade(req, socket, head) {
      const requestId = randomUUID();
      const trace: AdmissionTrace = { route: 'unmatched', path: '-', source: undefined, sessionName: undefined };
      socket.on('error', () => undefined);
      trackClientSocket(socket);
      const record = createUpgradeRecord(deps, req, trace, requestId);
      records.set(req, record);
      // A client gone before its answer is a 499 from that moment, as for HTTP, whatever step
      // its upgrade was at (some never reach the catch below: ws drops one that leaves as it
      // accepts it). An answered upgrade has been recorded already: this does nothing then.
      socket.once('close', () => record.refused(499));
      const stopWatch = watchClientLeaving(socket);
      upgrade(req, socket, head, requestId, trace, record, stopWatch).catch((err: unknown) => {
        stopWatch();
        const refusal = err instanceof CozeUpgradeRefusal ? err : undefined;
        if (refusal) record.cozeLogId = refusal.logId;
        // 499, as for an HTTP request whose client left before its answer.
        record.refused(refusal ? 401 : err instanceof ClientLeft ? 499 : err instanceof GatewayError ? err.status : 500);
        if (socket.destroyed) return;
        // A refused socket is the gateway's to close (upgrade-reject.ts): a drain does not wait for it.
        untrackClientSocket(socket);
        // Coze's own refusal of a fresh token reaches the client as Coze gave it (no X-Gateway-Error).
        if (refusal) answerUpgrade(socket, 401, { 'content-type': 'application/json; charset=utf-8', 'x-request-id': requestId, ...(refusal.logId ? { 'x-tt-logid': refusal.logId } : {}) }, refusal.body);
        else rejectUpgrade(socket, req, err, requestId);
      });
    },
    closeAll(code, reason) {
      for (const { client, upstream } of live) {
        if (client.readyState === WebSocket.OPEN) client.close(code, reason);
        if (upstream.readyState === WebSocket.OPEN) upstream.close(code, reason);
      }
      return live.size;
    },
    terminateAll() {
      const count = clientSockets.size;
      for (const { upstream } of live) upstream.terminate();
      for (const socket of clientSockets) socket.destroy();
      return count;
    },
    idle() {
      return clientSockets.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    get size() {
      return live.size;
    },
  };
}
