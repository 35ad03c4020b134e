import { applyEdits, parseTree, type Edit, type Node, type ParseError } from 'jsonc-parser';
import { GatewayError } from '../errors.js';

/**
 * A JSON object kept as its original text, so that forcing an identity field changes that field
 * and nothing else: numbers keep their exact text (`12345678901234567890`, `1.0`, `1e400` reach
 * Coze as sent, where JSON.parse would round them), keys keep their order, whitespace and escapes
 * stay (issue 14). jsonc-parser gives every node's offset and length and keeps repeated keys
 * visible, so a rule sees every occurrence of a key, exactly as Coze's decoder might read it.
 */

/** Deeper bodies are refused: the parser recurses, and Coze bodies are a few levels deep. */
export const MAX_JSON_DEPTH = 256;

export type JsonKind = 'string' | 'number' | 'boolean' | 'null' | 'object' | 'array';

/** One member of an object, as a decoder reads it (key escapes resolved). */
export interface JsonField {
  /** The key with its escapes resolved (`"user\u005fid"` is `user_id`). */
  readonly key: string;
  readonly kind: JsonKind;
  /** Strings and booleans decoded; numbers as their source text; undefined for objects, arrays and null. */
  readonly value: string | boolean | undefined;
}

export interface ForceOptions {
  /**
   * What to do when a parent on the path holds a non-object (a string, a number, an array):
   * `refuse` answers 400, `replace` puts an object there. A null or missing parent is always
   * replaced by an object.
   */
  nonObjectParent: 'refuse' | 'replace';
}

export interface JsonBody {
  /** Every member of every object found at `objectPath` (dotted; '' is the root), repeats included. */
  fields(objectPath?: string): JsonField[];
  /** Every occurrence of the dotted `path`, repeats included, in document order. */
  get(path: string): JsonField[];
  /** Sets every occurrence of the dotted `path` to the string `value`, adding it where absent. */
  force(path: string, value: string, options?: ForceOptions): void;
  /** True once anything was forced. */
  readonly changed: boolean;
  /** The bytes to forward: the original bytes when nothing was forced. */
  toBuffer(): Buffer;
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The text of a JSON body; bytes that are not UTF-8 are bad-json-body, never replaced. */
export function decodeUtf8(bytes: Buffer): string {
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    throw new GatewayError('bad-json-body', { detail: 'The body is not valid UTF-8.' });
  }
}

/**
 * Parses a JSON object strictly (RFC 8259: UTF-8, no comments, no trailing commas, nothing after
 * the value, at most MAX_JSON_DEPTH levels). Anything else is 400 bad-json-body, never a 500.
 */
export function parseJsonObject(bytes: Buffer): JsonBody {
  const text = decodeUtf8(bytes);
  checkDepth(text);
  const root = parseStrict(text);
  if (root.type !== 'object') throw new GatewayError('bad-json-body', { detail: 'Expected a JSON object.' });
  return new LosslessJson(bytes, text, root);
}

/**
 * A class, not an object literal of closures: V8 builds a literal holding a getter through a slow
 * runtime path on every call, which cost ~12 µs per body (bench/README.md).
 */
class LosslessJson implements JsonBody {
  changed = false;

  constructor(
    private readonly bytes: Buffer,
    private text: string,
    private root: Node,
  ) {}

  fields(objectPath = ''): JsonField[] {
    return objectsAt(this.root, split(objectPath)).flatMap((object) => members(object).map((m) => describe(this.text, m)));
  }

  get(path: string): JsonField[] {
    const parts = split(path);
    const key = parts.pop() as string;
    return objectsAt(this.root, parts).flatMap((object) => members(object).filter((m) => keyOf(m) === key).map((m) => describe(this.text, m)));
  }

  force(path: string, value: string, options: ForceOptions = { nonObjectParent: 'refuse' }): void {
    const edits: Edit[] = [];
    forceIn(this.root, split(path), JSON.stringify(value), options, edits);
    this.apply(edits);
  }

  toBuffer(): Buffer {
    return this.changed ? Buffer.from(this.text, 'utf8') : this.bytes;
  }

  private apply(edits: Edit[]): void {
    if (edits.length === 0) return;
    this.text = applyEdits(this.text, edits);
    this.root = parseStrict(this.text);
    this.changed = true;
  }
}

function split(path: string): string[] {
  return path === '' ? [] : path.split('.');
}

function parseStrict(text: string): Node {
  const errors: ParseError[] = [];
  const root = parseTree(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  if (!root || errors.length > 0) throw new GatewayError('bad-json-body');
  return root;
}

/**
 * Counts nesting outside strings before the recursive parser runs, so a hostile
 * `[[[[...` body is a 400 rather than a stack overflow.
 */
function checkDepth(text: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_JSON_DEPTH) throw new GatewayError('bad-json-body', { detail: `It is nested deeper than ${MAX_JSON_DEPTH} levels.` });
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
}

function members(object: Node): Node[] {
  return object.children ?? [];
}

function keyOf(property: Node): string {
  return property.children?.[0]?.value as string;
}

function valueOf(property: Node): Node {
  return property.children?.[1] as Node;
}

function describe(text: string, property: Node): JsonField {
  const node = valueOf(property);
  const kind = node.type as JsonKind;
  let value: string | boolean | undefined;
  if (kind === 'string' || kind === 'boolean') value = node.value as string | boolean;
  // The node's own value is a rounded double: keep what the caller wrote.
  else if (kind === 'number') value = text.slice(node.offset, node.offset + node.length);
  return { key: keyOf(property), kind, value };
}

/** Every object reached by following `parts` from `root`, through repeated keys too. */
function objectsAt(root: Node, parts: readonly string[]): Node[] {
  let level = [root];
  for (const part of parts) {
    level = level.flatMap((object) => members(object).filter((m) => keyOf(m) === part).map(valueOf)).filter((n) => n.type === 'object');
  }
  return level;
}

/** A value holding `parts` nested down to `leaf`: `{"a":{"b":"v"}}` for [a, b]. */
function nested(parts: readonly string[], leaf: string): string {
  return parts.reduceRight((inner, part) => `{${JSON.stringify(part)}:${inner}}`, leaf);
}

function forceIn(object: Node, parts: readonly string[], leaf: string, options: ForceOptions, edits: Edit[]): void {
  const [key, ...rest] = parts as [string, ...string[]];
  const found = members(object).filter((m) => keyOf(m) === key);
  if (found.length === 0) {
    const last = members(object).at(-1);
    const member = `${JSON.stringify(key)}:${nested(rest, leaf)}`;
    // After the last member, or just inside the braces of an empty object.
    edits.push(last ? { offset: last.offset + last.length, length: 0, content: `,${member}` } : { offset: object.offset + 1, length: 0, content: member });
    return;
  }
  for (const property of found) {
    const value = valueOf(property);
    if (rest.length === 0) {
      edits.push({ offset: value.offset, length: value.length, content: leaf });
    } else if (value.type === 'object') {
      forceIn(value, rest, leaf, options, edits);
    } else if (value.type === 'null' || options.nonObjectParent === 'replace') {
      edits.push({ offset: value.offset, length: value.length, content: nested(rest, leaf) });
    } else {
      throw new GatewayError('bad-json-body', { detail: `The field ${key} must be an object.` });
    }
  }
}
