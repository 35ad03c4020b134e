import { GatewayError } from '../errors.js';
import { decodeUtf8 } from './json-body.js';

/**
 * Keeps only some members of the objects under one root key of a JSON answer (bot info reduced
 * to its display fields, issue 15), without a parse tree. jsonc-parser's tree (json-body.ts) cost
 * ~27 µs of a ~120 µs cached request on a 121-byte answer (bench/README.md); here V8's own
 * JSON.parse checks the text, and then, the text being known valid, finding a member is only
 * skipping strings and matching brackets. The members kept keep their exact text, and repeated
 * keys are all seen, as with the tree: test/unit/policy/json-members.test.ts compares the two on
 * generated answers.
 */

/** One member of an object, as offsets into the text: from its key's quote to its value's end. */
export interface MemberSpan {
  /** The key with its escapes resolved (`"bot\u005fid"` is `bot_id`). */
  readonly key: string;
  readonly start: number;
  readonly valueStart: number;
  readonly end: number;
}

/**
 * The text of a JSON object, checked as strictly as parseJsonObject checks a body (UTF-8, RFC
 * 8259); anything else is bad-json-body. No depth limit is needed: V8's JSON.parse and the walks
 * below are iterative, so a deeply nested answer cannot overflow the stack.
 */
export function objectText(bytes: Buffer): string {
  const text = decodeUtf8(bytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new GatewayError('bad-json-body');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new GatewayError('bad-json-body', { detail: 'Expected a JSON object.' });
  return text;
}

/** The members of the object whose `{` is at `at`, in document order, repeats included. `text` is valid JSON. */
export function objectMembers(text: string, at: number): MemberSpan[] {
  const members: MemberSpan[] = [];
  let i = skipSpace(text, at + 1);
  if (text.charCodeAt(i) === CLOSE_BRACE) return members;
  for (;;) {
    const start = i;
    const keyEnd = stringEnd(text, start);
    const raw = text.slice(start + 1, keyEnd - 1);
    const key = raw.includes('\\') ? (JSON.parse(text.slice(start, keyEnd)) as string) : raw;
    const valueStart = skipSpace(text, skipSpace(text, keyEnd) + 1);
    const end = valueEnd(text, valueStart);
    members.push({ key, start, valueStart, end });
    i = skipSpace(text, end);
    if (text.charCodeAt(i) === CLOSE_BRACE) return members;
    i = skipSpace(text, i + 1);
  }
}

/** The members of the root object of `text` (valid JSON). */
export function rootMembers(text: string): MemberSpan[] {
  return objectMembers(text, skipSpace(text, 0));
}

/**
 * `text` with every object found at the root member `key` (repeats too; `root` is
 * rootMembers(text)) reduced to the members named in `keep`, each with its exact text;
 * undefined when there is nothing to drop.
 */
export function keepMembers(text: string, root: readonly MemberSpan[], key: string, keep: ReadonlySet<string>): string | undefined {
  let out = '';
  let copied = 0;
  for (const member of root) {
    if (member.key !== key || text.charCodeAt(member.valueStart) !== OPEN_BRACE) continue;
    const all = objectMembers(text, member.valueStart);
    const kept = all.filter((m) => keep.has(m.key));
    if (kept.length === all.length) continue;
    out += `${text.slice(copied, member.valueStart)}{${kept.map((m) => text.slice(m.start, m.end)).join(',')}}`;
    copied = member.end;
  }
  return copied === 0 ? undefined : out + text.slice(copied);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** Just past the closing quote of the string whose opening quote is at `i`. */
function stringEnd(text: string, i: number): number {
  for (let j = i + 1; ; j++) {
    const c = text.charCodeAt(j);
    if (c === BACKSLASH) j++;
    else if (c === QUOTE) return j + 1;
  }
}

/** Just past the value that starts at `i`. */
function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return stringEnd(text, i);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 0;
    for (let j = i; ; j++) {
      const d = text.charCodeAt(j);
      if (d === QUOTE) j = stringEnd(text, j) - 1;
      else if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
      else if ((d === CLOSE_BRACE || d === CLOSE_BRACKET) && --depth === 0) return j + 1;
    }
  }
  // A number, true, false or null: up to the next delimiter.
  let j = i;
  while (j < text.length) {
    const d = text.charCodeAt(j);
    if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || isSpace(d)) break;
    j++;
  }
  return j;
}
