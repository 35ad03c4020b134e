import assert from 'node:assert/strict';
import { WebSocket } from 'ws';

/** Opens a WebSocket through the gateway; rejects when the upgrade is refused. */
export function openWebSocket(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** An upgrade the gateway must refuse: its HTTP status, body and X-Gateway-Error. */
export function refusedUpgrade(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; gatewayError: string | undefined }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, gatewayError: res.headers['x-gateway-error'] as string | undefined }));
    });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('the upgrade was accepted'));
    });
    ws.once('error', () => undefined);
  });
}

export const nextMessage = (ws: WebSocket) =>
  new Promise<{ data: Buffer; isBinary: boolean }>((resolve) => ws.once('message', (data, isBinary) => resolve({ data: data as Buffer, isBinary })));

/** Resolves with the close code once the socket is closed. */
export const closed = (ws: WebSocket) =>
  new Promise<number>((resolve) => (ws.readyState === WebSocket.CLOSED ? resolve(ws.readyState) : ws.once('close', (code) => resolve(code))));

/** Polls `check` for up to 3 s; fails with `what` if it never holds. */
export async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), what);
}
