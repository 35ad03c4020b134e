/**
 * Reads a few fields out of a JSON answer too large to hold (over the 16 KiB the response
 * inspection keeps), chunk by chunk as it passes, without delaying or keeping it: a workflow
 * run's output can be megabytes, with its `usage` after it. It finds the keys `usage` (an
 * object, captured up to 1 KiB), `execute_id`, `execute_status`, `id`, `conversation_id`, `status` (strings) and
 * `run_mode` (a number), first occurrence each, at any depth or only at `depth` (1: the root
 * object's members, 2: those of an object in it, like a chat's `data`). It follows JSON's string
 * and nesting state across chunk boundaries, so a key is taken only where a key stands, never
 * inside a string value (a workflow's output is a JSON string that may itself mention "usage").
 */
export interface ScannedFields {
  usage?: unknown;
  execute_id?: string;
  execute_status?: string;
  id?: string;
  conversation_id?: string;
  status?: string;
  run_mode?: number;
}

type Wanted = keyof ScannedFields;
const WANTED: ReadonlySet<string> = new Set<Wanted>(['usage', 'execute_id', 'execute_status', 'id', 'conversation_id', 'status', 'run_mode']);
const MAX_VALUE = 1024;
/** Longer strings cannot be a wanted key: their text is not kept. */
const MAX_KEY = 16;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isOpen = (c: number) => c === 0x7b || c === 0x5b;
const isClose = (c: number) => c === 0x7d || c === 0x5d;

interface Value {
  key: Wanted;
  kind: 'object' | 'string' | 'scalar';
  /** The nesting depth outside the value. */
  depth: number;
  /** Text from earlier chunks. */
  text: string;
  /** Where it starts in the current chunk (0 when it began in an earlier one). */
  start: number;
}

export function createJsonFieldScanner(options: { depth?: number } = {}): { push(chunk: Buffer): void; readonly fields: ScannedFields } {
  const fields: ScannedFields = {};
  let inString = false;
  let escaped = false;
  let depth = 0;
  // The string being read, while it is short enough to be a key (undefined: too long).
  let str: string | undefined = '';
  let strStart = 0;
  // A wanted key's string just closed: a ':' next makes it a key.
  let closed: Wanted | undefined;
  // A wanted key and its ':' were seen: its value starts at the next non-space.
  let key: Wanted | undefined;
  let value: Value | undefined;

  function finish(text: string, end: number): void {
    const v = value as Value;
    value = undefined;
    const raw = v.text + text.slice(v.start, end);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return;
    }
    if (v.key === 'usage') {
      if (typeof parsed === 'object' && parsed !== null) fields.usage ??= parsed;
    } else if (v.key === 'run_mode') {
      if (typeof parsed === 'number') fields.run_mode ??= parsed;
    } else if (typeof parsed === 'string') fields[v.key] ??= parsed;
  }

  return {
    fields,
    push(chunk) {
      // latin1 maps each byte to one char: the structural bytes of JSON are ASCII, and UTF-8
      // continuation bytes (0x80 and above) never look like them.
      const text = chunk.toString('latin1');
      strStart = 0;
      if (value) value.start = 0;
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (inString) {
          if (escaped) escaped = false;
          else if (c === BACKSLASH) escaped = true;
          else if (c === QUOTE) {
            inString = false;
            const content = str === undefined ? undefined : str + text.slice(strStart, i);
            if (value?.kind === 'string' && depth === value.depth) finish(text, i + 1);
            else closed = content !== undefined && WANTED.has(content) ? (content as Wanted) : undefined;
          }
          continue;
        }
        if (isSpace(c)) continue;
        if (key !== undefined) {
          const wanted = key;
          key = undefined;
          if (fields[wanted] === undefined && (options.depth === undefined || depth === options.depth)) value = { key: wanted, kind: isOpen(c) ? 'object' : c === QUOTE ? 'string' : 'scalar', depth, text: '', start: i };
        } else if (value?.kind === 'scalar' && (c === 0x2c || isClose(c))) {
          finish(text, i);
        }
        if (c === COLON && closed !== undefined) {
          key = closed;
          closed = undefined;
          continue;
        }
        closed = undefined;
        if (c === QUOTE) {
          inString = true;
          str = '';
          strStart = i + 1;
        } else if (isOpen(c)) depth += 1;
        else if (isClose(c)) {
          depth -= 1;
          if (value?.kind === 'object' && depth === value.depth) finish(text, i + 1);
        }
      }
      if (inString && str !== undefined) {
        str += text.slice(strStart);
        if (str.length > MAX_KEY) str = undefined;
      }
      if (value) {
        value.text += text.slice(value.start);
        if (value.text.length > MAX_VALUE) value = undefined;
      }
    },
  };
}
