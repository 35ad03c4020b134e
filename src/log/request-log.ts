import { pino, type Logger } from 'pino';

/** The fields of the one line logged per request, in the order they are written. */
export interface RequestLogFields {
  requestId: string;
  method: string | undefined;
  route: string;
  path: string;
  status: number;
  durationMs: number;
  source: string | undefined;
  /** The session_name's keyed pseudonym (createSessionHasher), never the raw value. */
  session: string | undefined;
  cozeLogId: string | undefined;
  bytesIn: number;
  bytesOut: number;
  /** The Coze tokens counted for the request (issue 18); absent when Coze reported none. */
  tokens?: { input: number; output: number; total: number } | undefined;
  /** The X-Gateway-Error reason of an answer the gateway wrote itself; absent on Coze's answers. */
  error?: string | undefined;
}

const INFO = 30;

/**
 * The request log line, built as text and written to the logger's own destination: the same
 * bytes `logger.info(fields)` writes (level, time, the logger's bindings, then the fields, an
 * undefined one left out), without pino's generic serialiser and redaction walk, the largest
 * single cost of a cached request (bench/README.md). No field can hold a secret: they are fixed
 * here, and none is a path that REDACT_PATHS censors. Lines still go through pino's buffered
 * destination, flushed every 250 ms (logger.ts). test/unit/log/request-log.test.ts compares
 * the bytes with pino's.
 */
export function createRequestLog(logger: Logger): (fields: RequestLogFields) => void {
  const symbols = pino.symbols as unknown as Record<'streamSym' | 'chindingsSym', symbol>;
  const internals = logger as unknown as Record<symbol, unknown>;
  const stream = internals[symbols.streamSym] as { write(line: string): unknown };
  const bindings = internals[symbols.chindingsSym] as string;
  // The ISO time is the same for every line of a millisecond.
  let lastMs = -1;
  let time = '';
  return (f) => {
    if (logger.levelVal > INFO) return;
    const ms = Date.now();
    if (ms !== lastMs) {
      lastMs = ms;
      time = new Date(ms).toISOString();
    }
    let line = `{"level":"info","time":"${time}"${bindings},"requestId":${text(f.requestId)}`;
    if (f.method !== undefined) line += `,"method":${text(f.method)}`;
    line += `,"route":${text(f.route)},"path":${text(f.path)},"status":${f.status},"durationMs":${f.durationMs}`;
    if (f.source !== undefined) line += `,"source":${text(f.source)}`;
    if (f.session !== undefined) line += `,"session":${text(f.session)}`;
    if (f.cozeLogId !== undefined) line += `,"cozeLogId":${text(f.cozeLogId)}`;
    line += `,"bytesIn":${f.bytesIn},"bytesOut":${f.bytesOut}`;
    if (f.tokens !== undefined) line += `,"tokens":{"input":${f.tokens.input},"output":${f.tokens.output},"total":${f.tokens.total}}`;
    if (f.error !== undefined) line += `,"error":${text(f.error)}`;
    stream.write(`${line}}\n`);
  };
}

/** Printable ASCII without a quote or a backslash needs no escaping; anything else, JSON's own. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function text(value: string): string {
  return PLAIN.test(value) ? `"${value}"` : JSON.stringify(value);
}
