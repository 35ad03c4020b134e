/**
 * Reads a few fields out of a JSON answer too large to hold (over the 16 KiB the response
 * inspection keeps), chunk by chunk as it passes, without delaying or keeping it: a workflow
 * run's output can be megabytes, with its `usage` after it. It looks for the keys `usage`
 * (an object, captured up to 1 KiB), `execute_id`, `execute_status` (strings) and `run_mode` (a
 * number), first occurrence each. A key is taken only where a key can stand (after `{`, `,` or
 * whitespace), never inside a string: a quote inside a JSON string is escaped (`\"`).
 */
export interface ScannedFields {
  usage?: unknown;
  execute_id?: string;
  execute_status?: string;
  run_mode?: number;
}

const KEY = /(^|[{,\s])"(usage|execute_id|execute_status|run_mode)"\s*:\s*/g;
const MAX_OBJECT = 1024;
/** Long enough to hold a key split across two chunks, and its value's start. */
const CARRY = 64;

export function createJsonFieldScanner(): { push(chunk: Buffer): void; readonly fields: ScannedFields } {
  const fields: ScannedFields = {};
  let carry = '';
  // A value cut by a chunk boundary: its key and the text read so far.
  let open: { key: string; text: string } | undefined;

  function take(key: string, text: string): { done: boolean; used: number } {
    if (key === 'usage') {
      const end = objectEnd(text);
      if (end === -1) return { done: text.length > MAX_OBJECT, used: text.length };
      if (fields.usage === undefined) {
        try {
          fields.usage = JSON.parse(text.slice(0, end));
        } catch {
          // Not an object after all: nothing to count.
        }
      }
      return { done: true, used: end };
    }
    const match = key === 'run_mode' ? /^(-?\d+)[,}\s]/.exec(text) : /^"((?:[^"\\]|\\.)*)"/.exec(text);
    if (!match) return { done: text.length > MAX_OBJECT || !(key === 'run_mode' ? /^-?\d*$/ : /^"/).test(text), used: text.length };
    if (key === 'run_mode') fields.run_mode ??= Number(match[1]);
    else if (key === 'execute_id') fields.execute_id ??= match[1];
    else fields.execute_status ??= match[1];
    return { done: true, used: (match[0] as string).length };
  }

  return {
    fields,
    push(chunk) {
      let text = carry + chunk.toString('latin1');
      if (open) {
        open.text += text;
        const result = take(open.key, open.text);
        if (!result.done) {
          carry = '';
          return;
        }
        text = open.text.slice(result.used);
        open = undefined;
      }
      KEY.lastIndex = 0;
      let m: RegExpExecArray | null;
      let scannedTo = 0;
      while ((m = KEY.exec(text)) !== null) {
        const start = m.index + m[0].length;
        const result = take(m[2] as string, text.slice(start));
        if (!result.done) {
          open = { key: m[2] as string, text: text.slice(start) };
          carry = '';
          return;
        }
        scannedTo = start + result.used;
        KEY.lastIndex = scannedTo;
      }
      carry = text.slice(Math.max(scannedTo, text.length - CARRY));
    },
  };
}

/** The offset just past the object that `text` starts with, or -1 when it is not complete yet. */
function objectEnd(text: string): number {
  if (!text.startsWith('{')) return 0;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length && i <= MAX_OBJECT; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i += 1;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth += 1;
    else if (c === '}' && --depth === 0) return i + 1;
  }
  return -1;
}
