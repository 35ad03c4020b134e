/**
 * The gateway adds bytes to an SSE stream only to end it when it cannot end normally (drain,
 * idle, reset). Every SDK parser must then see each complete event Coze sent and then that final
 * event (the official SDKs' stream readers, restated in test/conformance/parsers): PY reads a fixed number of lines per event, GO and JAVA
 * take the line after `event:` as data and start workflow events only at `id:`, and JS parses
 * every `data:` line as JSON. An event Coze had only half sent would break all four, and glue the
 * final event onto a partial line. So the relay holds back the bytes of an event until its blank
 * line arrives (Coze writes an event at once, so this costs nothing in practice), and a stream
 * cut mid-event loses only that unfinished event.
 */

/** An event longer than this is passed on unfinished rather than held (audio deltas stay far below). */
export const MAX_HELD_EVENT_BYTES = 256 * 1024;

export interface EventGate {
  /** The bytes of `chunk` (and of earlier held ones) up to the end of the last complete event. */
  pass(chunk: Buffer): Buffer;
  /** What is held when the stream ends normally: forwarded as is. */
  rest(): Buffer;
  /** True when the bytes passed so far end exactly at an event boundary (or nothing was passed). */
  readonly atBoundary: boolean;
  /** True when the bytes passed so far end at the end of a line. */
  readonly atLineStart: boolean;
}

export function createEventGate(maxHeldBytes = MAX_HELD_EVENT_BYTES): EventGate {
  let held: Buffer = Buffer.alloc(0);
  let tail = '\n\n';
  const note = (passed: Buffer) => {
    if (passed.length === 0) return;
    tail = (tail + passed.subarray(-2).toString('latin1')).slice(-2);
    gate.atBoundary = tail === '\n\n';
    gate.atLineStart = tail.endsWith('\n');
  };
  // Plain fields kept up to date, not getters: an object literal holding a getter is built
  // through V8's slow runtime path (bench/README.md).
  const gate: { -readonly [K in keyof EventGate]: EventGate[K] } = {
    atBoundary: true,
    atLineStart: true,
    pass(chunk) {
      const bytes = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
      const end = eventsEnd(bytes);
      let passed: Buffer;
      if (end === 0 && bytes.length > maxHeldBytes) {
        passed = bytes;
        held = Buffer.alloc(0);
      } else {
        passed = bytes.subarray(0, end);
        held = end === bytes.length ? Buffer.alloc(0) : Buffer.from(bytes.subarray(end));
      }
      note(passed);
      return passed;
    },
    rest() {
      const rest = held;
      held = Buffer.alloc(0);
      note(rest);
      return rest;
    },
  };
  return gate;
}

/** Offset just past the last blank line (`\n\n` or `\n\r\n`); 0 when there is none. */
function eventsEnd(bytes: Buffer): number {
  const lf = bytes.lastIndexOf('\n\n');
  const crlf = bytes.lastIndexOf('\n\r\n');
  return Math.max(lf === -1 ? 0 : lf + 2, crlf === -1 ? 0 : crlf + 3);
}

/**
 * The final event in Coze's own framing, on a fresh line: chat streams `event:error` with
 * `{code, msg}`; workflow streams `id: <last + 1>` / `event: Error` / `data: {error_code,
 * error_message}`, because the Python, Go and Java readers start a workflow event only at `id:`
 * (Coze's own Error events carry one too).
 */
export function finalEvent(options: { workflowFraming: boolean; lastId: number | undefined; gate: EventGate; code: number; message: string }): string {
  const { gate } = options;
  const lead = gate.atBoundary ? '' : gate.atLineStart ? '\n' : '\n\n';
  if (!options.workflowFraming) return `${lead}event:error\ndata:${JSON.stringify({ code: options.code, msg: options.message })}\n\n`;
  const id = options.lastId === undefined ? 0 : options.lastId + 1;
  return `${lead}id: ${id}\nevent: Error\ndata: ${JSON.stringify({ error_code: options.code, error_message: options.message })}\n\n`;
}
