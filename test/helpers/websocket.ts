import assert from 'node:assert/strict';
import { WebSocket } from 'ws';

export interface Received {
  data: Buffer;
  isBinary: boolean;
}

/**
 * Every frame a socket received, from its first: Coze speaks first (`chat.created`), and that
 * frame can arrive before a listener added after `open` would see it.
 */
const inboxes = new WeakMap<WebSocket, { frames: Received[]; waiters: Array<() => void> }>();

/** Opens a WebSocket through the gateway; rejects when the upgrade is refused. */
export function openWebSocket(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const inbox = { frames: [] as Received[], waiters: [] as Array<() => void> };
    inboxes.set(ws, inbox);
    ws.on('message', (data, isBinary) => {
      inbox.frames.push({ data: data as Buffer, isBinary });
      for (const wake of inbox.waiters.splice(0)) wake();
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** The next frame not read yet (in arrival order). */
export async function nextMessage(ws: WebSocket): Promise<Received> {
  const inbox = inboxes.get(ws);
  if (!inbox) throw new Error('open the socket with openWebSocket()');
  while (inbox.frames.length === 0) await new Promise<void>((resolve) => inbox.waiters.push(resolve));
  return inbox.frames.shift() as Received;
}

/** Reads frames until a JSON event of `eventType` arrives; returns it with the frames read before it. */
export async function nextEvent(ws: WebSocket, eventType: string): Promise<{ event: { event_type: string; data?: unknown; detail?: { logid?: string } } & Record<string, unknown>; skipped: Received[] }> {
  const skipped: Received[] = [];
  for (;;) {
    const frame = await nextMessage(ws);
    let event: unknown;
    try {
      event = JSON.parse(frame.data.toString());
    } catch {
      event = undefined;
    }
    if (typeof event === 'object' && event !== null && (event as { event_type?: unknown }).event_type === eventType) {
      return { event: event as { event_type: string } & Record<string, unknown>, skipped };
    }
    skipped.push(frame);
  }
}

/** An upgrade the gateway must refuse: its HTTP status, body and X-Gateway-Error. */
export function refusedUpgrade(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; gatewayError: string | undefined; logId: string | undefined }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, gatewayError: res.headers['x-gateway-error'] as string | undefined, logId: res.headers['x-tt-logid'] as string | undefined }));
    });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('the upgrade was accepted'));
    });
    ws.once('error', () => undefined);
  });
}

/** Resolves with the close code once the socket is closed. */
export const closed = (ws: WebSocket) =>
  new Promise<number>((resolve) => (ws.readyState === WebSocket.CLOSED ? resolve(ws.readyState) : ws.once('close', (code) => resolve(code))));

/**
 * Polls `check` (answered now or later) every 10 ms for up to `timeoutMs`; fails with `what` if
 * it never holds. A wait for a state the gateway reaches on its own: no time is asserted.
 */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 3000): Promise<void> {
  for (let waited = 0; waited < timeoutMs && !(await check()); waited += 10) await new Promise((r) => setTimeout(r, 10));
  assert.ok(await check(), what);
}
