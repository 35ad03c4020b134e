import type { IncomingHttpHeaders } from 'node:http';
import { createJsonFieldScanner, type ScannedFields } from '../usage/usage-scan.js';
import type { UpstreamResponse } from './forwarder.js';

/** Coze's ways of saying "this token is not valid" (https://www.coze.cn/open/docs/developer_guides/troubleshooting_4100_4101). */
const TOKEN_INVALID_CODES: ReadonlySet<number> = new Set([4100, 700012006]);

/** An auth error body is tiny; anything longer is a real answer and is streamed on. */
const INSPECT_LIMIT_BYTES = 16 * 1024;

export interface InspectedResponse {
  /** Coze rejected the token: HTTP 401, or a JSON body with code 4100 / 700012006. */
  tokenRejected: boolean;
  /** The `code` of a small JSON answer, for the error-code metric; undefined when not known. */
  cozeCode: number | undefined;
  /** Body bytes already read from the upstream response, to be written first. */
  prefix: Buffer[];
  /** True when `prefix` is the whole body. */
  complete: boolean;
}

/** Chunks as one Buffer, without a copy when there is only one. */
function joined(chunks: readonly Buffer[]): Buffer {
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
}

/** The whole body of a complete answer, without a copy when it came (or was filtered) as one chunk. */
export function completeBody(inspected: InspectedResponse): Buffer {
  return joined(inspected.prefix);
}

export function isEventStream(res: { headers: IncomingHttpHeaders }): boolean {
  return /^text\/event-stream\b/i.test(res.headers['content-type'] ?? '');
}

export function isJson(res: { headers: IncomingHttpHeaders }): boolean {
  return /\bjson\b/i.test(res.headers['content-type'] ?? '');
}

/** The answer went quiet for the whole idle deadline while it was being inspected; it was cut. */
export class InspectionIdle extends Error {
  constructor() {
    super('the Coze answer went quiet while it was being read');
    this.name = 'InspectionIdle';
  }
}

/**
 * Reads just enough of a non-streaming answer to tell whether Coze rejected the token, before
 * any byte reaches the client (SPEC section 1, step 8). Streams and large bodies pass at once.
 * An answer that sends no byte for `idleTimeoutMs` is cancelled and fails with InspectionIdle;
 * one cancelled from outside (the client left) fails too, so the caller is never left waiting.
 * `done` runs exactly once: at once when nothing needs reading, else when the body has come.
 * A callback and not a promise: the cached request path creates none (src/maybe.ts).
 */
export function inspectResponse(res: UpstreamResponse, options: { idleTimeoutMs: number }, done: (err: Error | null, inspected?: InspectedResponse) => void): void {
  const status = res.statusCode;
  if (isEventStream(res) || (!isJson(res) && status !== 401)) {
    done(null, { tokenRejected: false, cozeCode: undefined, prefix: [], complete: false });
    return;
  }
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > INSPECT_LIMIT_BYTES) {
    done(null, { tokenRejected: status === 401, cozeCode: undefined, prefix: [], complete: false });
    return;
  }
  let settled = false;
  let idle: NodeJS.Timeout | undefined;
  const settle = (err: Error | null, inspected?: InspectedResponse) => {
    if (settled) return;
    settled = true;
    clearTimeout(idle);
    done(err, inspected);
  };
  res.collect(
    INSPECT_LIMIT_BYTES,
    () => idle?.refresh(),
    (err, chunks, complete) => {
      if (err) settle(err);
      else if (!complete) settle(null, { tokenRejected: status === 401, cozeCode: undefined, prefix: chunks, complete: false });
      else {
        const whole = joined(chunks);
        const cozeCode = readCode(whole);
        const tokenRejected = status === 401 || (cozeCode !== undefined && TOKEN_INVALID_CODES.has(cozeCode));
        settle(null, { tokenRejected, cozeCode, prefix: [whole], complete: true });
      }
    },
  );
  // A small answer usually arrives whole with its headers, read by undici in the same turn: the
  // idle timer is armed only for one that did not (a microtask runs once that turn is over).
  if (!settled) {
    queueMicrotask(() => {
      if (settled) return;
      idle = setTimeout(() => {
        settle(new InspectionIdle());
        res.cancel();
      }, options.idleTimeoutMs);
    });
  }
}

/** The bytes a successful Coze answer starts with: `{"code":0,"msg":"",...}` (Coze's success envelope, as the emulator sends it). */
const SUCCESS_PREFIX = Buffer.from('{"code":0,');
const SUCCESS_WHOLE = Buffer.from('{"code":0}');
const CODE_KEY = Buffer.from('"code"');
const ESCAPE = Buffer.from('\\u');

/**
 * The `code` of a small JSON answer. The common success is recognised from its first bytes,
 * without JSON.parse, when no other key could be `code`: JSON.parse keeps the last of a repeated
 * key, so a body with `"code"` further on, or any `\u` escape (a key may be spelt with one), is
 * parsed the full way, like every other answer. (Invalid JSON after that prefix also reads as 0,
 * where JSON.parse would learn nothing: either way the answer is neither a rejection nor counted.)
 */
export function readCode(body: Buffer): number | undefined {
  const success =
    body.length > SUCCESS_PREFIX.length
      ? body.subarray(0, SUCCESS_PREFIX.length).equals(SUCCESS_PREFIX) && body.indexOf(CODE_KEY, SUCCESS_PREFIX.length) === -1 && body.indexOf(ESCAPE) === -1
      : body.equals(SUCCESS_WHOLE);
  if (success) return 0;
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (typeof parsed === 'object' && parsed !== null && 'code' in parsed) {
      const code = (parsed as { code: unknown }).code;
      return typeof code === 'number' ? code : undefined;
    }
  } catch {
    // Not JSON after all: nothing to learn from it.
  }
  return undefined;
}

/** The longest unterminated SSE line kept whole for the observer. */
const MAX_HELD_LINE = 64 * 1024;
const NEWLINE = 0x0a;

export interface SseObserver {
  /** Feeds the bytes that went to the client. */
  observe(chunk: Buffer): void;
  /** The last `id:` seen (workflow framing), as a number; undefined before any. */
  readonly lastId: number | undefined;
}

/**
 * Watches an SSE byte stream for `error` events (chat framing `event:error`, workflow framing
 * `event: Error`) and reports their codes, and remembers the last event `id:`, which the
 * gateway's own final event continues. `data` gets the data lines of the events it names
 * (lower-cased), e.g. the usage of `conversation.chat.completed`. It only observes the bytes:
 * the stream itself is relayed untouched and undelayed.
 */
export function createSseObserver(
  onCode: (code: number | string) => void,
  data?: { events: ReadonlySet<string>; onData(event: string, data: string): void; onLongData?(event: string, fields: ScannedFields): void },
): SseObserver {
  let carry = '';
  let currentEvent = '';
  // A data line of a watched event too long to hold (a workflow's large output, usage after it):
  // the rest of it is scanned as it passes (`onLongData`, the members of its object).
  let long: { event: string; scanner: ReturnType<typeof createJsonFieldScanner> } | undefined;
  // lastId is a plain field, not a getter: an object literal holding a getter is built through
  // V8's slow runtime path (bench/README.md).
  const observer: { lastId: number | undefined; observe(chunk: Buffer): void } = {
    lastId: undefined,
    observe(chunk) {
      let rest = chunk;
      if (long) {
        const end = chunk.indexOf(NEWLINE);
        long.scanner.push(end === -1 ? chunk : chunk.subarray(0, end));
        if (end === -1) return;
        data?.onLongData?.(long.event, long.scanner.fields);
        long = undefined;
        rest = chunk.subarray(end + 1);
      }
      const lines = (carry + rest.toString('utf8')).split('\n');
      carry = lines.pop() ?? '';
      for (const raw of lines) {
        const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
        if (line === '') {
          currentEvent = '';
        } else if (line.startsWith('id:')) {
          const id = Number(line.slice(3).trim());
          if (Number.isSafeInteger(id)) observer.lastId = id;
        } else if (line.startsWith('event:')) {
          currentEvent = line.slice(6).trim().toLowerCase();
        } else if (line.startsWith('data:') && currentEvent === 'error') {
          const code = errorCodeOf(line.slice(5).trim());
          if (code !== undefined) onCode(code);
        } else if (data && line.startsWith('data:') && data.events.has(currentEvent)) {
          data.onData(currentEvent, line.slice(5).trim());
        }
      }
      // A pathological unterminated line must not grow without bound. Checked after the lines
      // before it, whose `event:` it belongs to.
      if (carry.length > MAX_HELD_LINE) {
        if (data?.onLongData && carry.startsWith('data:') && data.events.has(currentEvent)) {
          long = { event: currentEvent, scanner: createJsonFieldScanner({ depth: 1 }) };
          long.scanner.push(Buffer.from(carry.slice(5)));
        }
        carry = '';
      }
    },
  };
  return observer;
}

function errorCodeOf(data: string): number | string | undefined {
  try {
    const parsed = JSON.parse(data) as { code?: unknown; error_code?: unknown };
    const code = parsed.code ?? parsed.error_code;
    return typeof code === 'number' || typeof code === 'string' ? code : 'other';
  } catch {
    return 'other';
  }
}
