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

/** A stream that does not end normally: cut (`reset`) or left open and silent (`stall`). */
export interface StreamFault {
  mode: 'reset' | 'stall';
  afterEvents: number;
  /** Bytes of the next event written before the fault: a cut in the middle of an event. */
  partialBytes?: number;
}

export interface StreamOptions {
  pacing: Pacing;
  logId: string;
  fault?: StreamFault | undefined;
}

/**
 * Writes events one res.write() at a time, waiting for the pacer between them. Stops when the
 * client goes away. A fault cuts the socket, or leaves the stream silent, after that many events
 * (and part of the next one, when asked).
 */
export async function writeStream(res: ServerResponse, frames: string[], options: StreamOptions): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-tt-logid': options.logId });
  res.flushHeaders();
  const { fault } = options;
  for (let i = 0; i < frames.length; i++) {
    if (fault && i === fault.afterEvents) {
      if (fault.partialBytes) await write(res, Buffer.from(frames[i] as string).subarray(0, fault.partialBytes));
      if (fault.mode === 'reset') res.socket?.destroy();
      return;
    }
    await options.pacing.turn();
    if (res.destroyed || res.writableEnded) return;
    const written = write(res, frames[i] as string);
    options.pacing.wrote();
    await written;
  }
  res.end();
}

/**
 * Resolves once the bytes are handed to the socket: a fault cutting the stream right after must
 * not take already written events with it.
 */
function write(res: ServerResponse, bytes: string | Buffer): Promise<void> {
  return new Promise<void>((resolve) => res.write(bytes, () => resolve()));
}
