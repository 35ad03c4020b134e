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
 */
export function createSessionNamer(options: NamerOptions): (identity: Identity) => string {
  const setting = options.setting ?? 'session.template';
  const invalid = options.invalidReason ?? 'bad-session-name';
  const parts: Array<(identity: Identity) => string> = [];
  let last = 0;
  for (const match of options.template.matchAll(PLACEHOLDER)) {
    const literal = options.template.slice(last, match.index);
    parts.push(() => literal);
    parts.push(resolver(match[1] as string, setting));
    last = (match.index ?? 0) + match[0].length;
  }
  const tail = options.template.slice(last);
  parts.push(() => tail);

  return (identity) => {
    const rendered = parts.map((part) => part(identity)).join('');
    if (rendered === '') throw new GatewayError(invalid, { detail: `The rendered value of ${setting} is empty.` });
    const name = options.hmacSecret ? options.prefix + createHmac('sha256', options.hmacSecret).update(rendered).digest('base64url') : options.prefix + rendered;
    if (name.length > MAX_LENGTH || !/^[\x21-\x7e]+$/.test(name)) throw new GatewayError(invalid);
    return name;
  };
}

function resolver(placeholder: string, setting: string): (identity: Identity) => string {
  if (placeholder === 'subject') return (i) => i.subject;
  if (placeholder === 'issuer') return (i) => i.issuer ?? '';
  if (placeholder === 'source') return (i) => i.source;
  if (placeholder.startsWith('claims.') && placeholder.length > 7) {
    const path = placeholder.slice(7).split('.');
    return (i) => {
      let node: unknown = i.claims;
      for (const p of path) node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[p] : undefined;
      return typeof node === 'string' || typeof node === 'number' ? String(node) : '';
    };
  }
  throw new TypeError(`${setting}: unknown placeholder {${placeholder}} (use {subject}, {issuer}, {source} or {claims.NAME})`);
}
