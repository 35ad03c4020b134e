import type { ServerResponse } from 'node:http';
import type { StreamPacer } from './types.js';

/** `/v3/chat` framing as recorded from Coze: no space after the colon (https://www.coze.cn/open/docs/developer_guides/chat_v3). */
export function chatEvent(event: string, data: unknown): string {
  return `event:${event}\ndata:${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

/** Workflow framing: `id:` lines and spaces after the colons (https://www.coze.cn/open/docs/developer_guides/workflow_stream_run). */
export function workflowEvent(id: number, event: string, data: unknown): string {
  return `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Lets a test decide when each next event may be written, across all paced streams (FIFO). */
export function createPacer() {
  let active = false;
  let credits = 0;
  let sent = 0;
  const waiting: Array<() => void> = [];
  const sentWaiters: Array<{ n: number; resolve: () => void }> = [];

  function drain(): void {
    while (credits > 0 && waiting.length > 0) {
      credits -= 1;
      waiting.shift()?.();
    }
  }

  const pacer: StreamPacer = {
    release(n = 1) {
      credits += n;
      drain();
    },
    get sent() {
      return sent;
    },
    waitForSent(n) {
      return sent >= n ? Promise.resolve() : new Promise((resolve) => sentWaiters.push({ n, resolve }));
    },
  };

  return {
    pacer,
    start(): StreamPacer {
      active = true;
      credits = 0;
      sent = 0;
      return pacer;
    },
    stop(): void {
      active = false;
      for (const w of waiting.splice(0)) w();
    },
    /** Resolves when the next event may go out. */
    turn(): Promise<void> {
      if (!active) return Promise.resolve();
      return new Promise((resolve) => {
        waiting.push(resolve);
        drain();
      });
    },
    wrote(): void {
      if (!active) return;
      sent += 1;
      for (let i = sentWaiters.length - 1; i >= 0; i--) {
        const w = sentWaiters[i] as { n: number; resolve: () => void };
        if (sent >= w.n) {
          sentWaiters.splice(i, 1);
          w.resolve();
        }
      }
    },
  };
}

export type Pacing = ReturnType<typeof createPacer>;

/**
 * Writes events one res.write() at a time, waiting for the pacer between them. Stops when the
 * client goes away. `cutAfter` destroys the socket after that many events, `stallAfter` leaves
 * the stream open and silent after that many (fault injection).
 */
export async function writeStream(res: ServerResponse, frames: string[], pacing: Pacing, cutAfter?: number, stallAfter?: number): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  res.flushHeaders();
  for (let i = 0; i < frames.length; i++) {
    if (cutAfter !== undefined && i === cutAfter) {
      res.socket?.destroy();
      return;
    }
    if (stallAfter !== undefined && i === stallAfter) return;
    await pacing.turn();
    if (res.destroyed || res.writableEnded) return;
    // Wait until the event is handed to the socket: a fault cutting the stream right after
    // must not take already written events with it.
    const written = new Promise<void>((resolve) => res.write(frames[i], () => resolve()));
    pacing.wrote();
    await written;
  }
  res.end();
}
