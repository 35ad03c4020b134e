import { createHmac } from 'node:crypto';
import type { Identity } from '../auth/identity.js';
import { GatewayError, type ErrorReason } from '../errors.js';

const PLACEHOLDER = /\{([^{}]+)\}/g;
const MAX_LENGTH = 128;

export interface NamerOptions {
  template: string;
  prefix: string;
  hmacSecret?: string;
  /** The setting the template comes from, named by a start-up error; session.template by default. */
  setting?: string;
  /** The catalogue reason of a request whose identity renders to an invalid value. */
  invalidReason?: Extract<ErrorReason, 'bad-session-name' | 'bad-custom-consumer'>;
}

/**
 * identity -> session_name, a pure function: the same identity gets the same name on every
 * replica (SPEC section 3.4). The template is parsed once; the result is 1 to 128 printable
 * ASCII characters (0x21-0x7E: no space, no control character, so nothing can smuggle a CR/LF
 * into a JWT claim or a log line), else the request gets 400. The same renderer makes the
 * JWT's custom_consumer (coze.sessionContext.customConsumer), under the same rules.
 *
 * Coze keeps users apart by session_name alone, so two identities must never render alike. Every
 * value but the last has "%" and the first character of each text between placeholders
 * percent-encoded, so read from the left each value ends where the first such character begins
 * the text after it, the last value is what remains before the fixed tail, and the escapes decode
 * one way only: the name gives back every value. The last value is left as it is so that
 * `{subject}` and `{source}:{subject}` name everyone as before; adjacent placeholders, or a text
 * between them starting with "%", cannot be split and are refused at start-up.
 */
export function createSessionNamer(options: NamerOptions): (identity: Identity) => string {
  const setting = options.setting ?? 'session.template';
  const invalid = options.invalidReason ?? 'bad-session-name';
  const texts: string[] = [];
  const names: string[] = [];
  let last = 0;
  for (const match of options.template.matchAll(PLACEHOLDER)) {
    texts.push(options.template.slice(last, match.index));
    names.push(match[1] as string);
    last = (match.index ?? 0) + match[0].length;
  }
  texts.push(options.template.slice(last));
  const values = names.map((name) => resolver(name, setting, invalid));
  const separators = texts.slice(1, -1);
  separators.forEach((text, i) => {
    const between = `{${names[i]}} and {${names[i + 1]}}`;
    if (text === '') throw new TypeError(`${setting}: ${between} have no text between them, so "ab"+"c" and "a"+"bc" would render alike; separate them, e.g. {${names[i]}}:{${names[i + 1]}}`);
    if (text.startsWith('%')) throw new TypeError(`${setting}: the text between ${between} may not start with "%", which escapes the values`);
  });
  const escape = escaper(separators.map((text) => String.fromCodePoint(text.codePointAt(0) as number)));

  return (identity) => {
    let rendered = texts[0] as string;
    values.forEach((value, i) => {
      rendered += (i < values.length - 1 ? escape(value(identity)) : value(identity)) + texts[i + 1];
    });
    if (rendered === '') throw new GatewayError(invalid, { detail: `The rendered value of ${setting} is empty.` });
    // HMAC input is UTF-8, which turns every lone surrogate into U+FFFD: refused, or two values would hash alike.
    if (options.hmacSecret && /\p{Cs}/u.test(rendered)) throw new GatewayError(invalid);
    const name = options.hmacSecret ? options.prefix + createHmac('sha256', options.hmacSecret).update(rendered).digest('base64url') : options.prefix + rendered;
    if (name.length > MAX_LENGTH || !/^[\x21-\x7e]+$/.test(name)) throw new GatewayError(invalid);
    return name;
  };
}

/** Percent-encodes (as UTF-8 bytes) "%" and the given characters; the identity when there are none. */
function escaper(characters: string[]): (value: string) => string {
  if (characters.length === 0) return (value) => value;
  const set = new Set(['%', ...characters]);
  const pattern = new RegExp(`[${[...set].map((c) => `\\u{${(c.codePointAt(0) as number).toString(16)}}`).join('')}]`, 'gu');
  const encode = (c: string) => Array.from(Buffer.from(c, 'utf8'), (byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  return (value) => value.replace(pattern, encode);
}

function resolver(placeholder: string, setting: string, invalid: ErrorReason): (identity: Identity) => string {
  if (placeholder === 'subject') return (i) => i.subject;
  // API keys and the trusted header carry no issuer: one value, '', for all of them.
  if (placeholder === 'issuer') return (i) => i.issuer ?? '';
  if (placeholder === 'source') return (i) => i.source;
  if (placeholder.startsWith('claims.') && placeholder.length > 7) {
    const path = placeholder.slice(7).split('.');
    // Only a string: a missing claim, null, an array or an object has no text of its own to
    // render. Nor a number: JSON.parse has already merged distinct numerals (1 and 1.0, 2^53 and
    // 2^53+1), and keeping 5 apart from "5" would need a mark that renamed every numeric user.
    return (i) => {
      let node: unknown = i.claims;
      for (const p of path) node = typeof node === 'object' && node !== null && Object.hasOwn(node, p) ? (node as Record<string, unknown>)[p] : undefined;
      if (typeof node === 'string') return node;
      throw new GatewayError(invalid, { detail: `The caller's {${placeholder}} is ${kindOf(node)}.` });
    };
  }
  throw new TypeError(`${setting}: unknown placeholder {${placeholder}} (use {subject}, {issuer}, {source} or {claims.NAME})`);
}

function kindOf(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
