import { createScanner, type SyntaxKind } from 'jsonc-parser';
import { GatewayError } from '../errors.js';
import type { Endpoint, FieldPolicy } from './endpoints.js';
import { parseJsonObject, type JsonBody, type JsonField } from './json-body.js';
import { allowlists, checkDrafts, checkScopes, type ScopeOptions, type ScopeValue } from './scope-check.js';
import { keepMembers, objectText, rootMembers } from './json-members.js';
import { createQueryRule, type QueryRule } from './query-policy.js';

export type { ScopeOptions } from './scope-check.js';

/**
 * The rules of one endpoint, built once from its table entry (route-table.ts). A rule that has
 * nothing to do is null, so the hot path skips it.
 */
export interface FieldRules {
  /** Checks and rewrites a JSON body; null when the endpoint's body is not read. */
  readonly rewriteBody: ((bytes: Buffer, sessionName: string) => Buffer) | null;
  /** Checks the query and path parameters; returns the query string to forward. */
  readonly rewriteQuery: QueryRule;
  /**
   * Checks one client frame of a WebSocket; returns the bytes to forward, or undefined when the
   * frame cannot be checked and must not reach Coze. Null when no event is controlled.
   */
  readonly rewriteEvent: ((frame: Buffer, sessionName: string) => Buffer | undefined) | null;
  /** Reduces a successful JSON answer (bot info to display fields); null when it passes as is. */
  readonly filterResponse: ((bytes: Buffer) => Buffer) | null;
}

/**
 * Case folding as Go's encoding/json matches keys (bytes.EqualFold, Unicode simple folding):
 * `USER_ID`, `User_Id` and `uſer_id` (long s) all decode into a user_id field there. Folding
 * through upper case maps ſ to s and the Kelvin sign to k as well.
 */
export function foldKey(key: string): string {
  return key.toUpperCase().toLowerCase();
}

/** A tree of the controlled paths: `{user_id: {}, ext: {user_id: {}}}`. */
type KeyTree = Map<string, KeyTree>;

function keyTree(paths: readonly string[]): KeyTree {
  const tree: KeyTree = new Map();
  for (const path of paths) {
    let node = tree;
    for (const part of path.split('.')) {
      if (!node.has(part)) node.set(part, new Map());
      node = node.get(part) as KeyTree;
    }
  }
  return tree;
}

export function controlledPaths(policy: FieldPolicy): string[] {
  return [...(policy.user ?? []), ...(policy.bot ?? []), ...(policy.workflow ?? []), ...(policy.app ?? []), ...(policy.draft ?? []).map((d) => d.field)];
}

/**
 * Refuses what a decoder could read another way than the gateway did: a key equal to a
 * controlled one ignoring case (Go's encoding/json matches keys that way), or a controlled key
 * (or a parent of one) sent twice (decoders differ on which one wins). 400 ambiguous-field.
 */
export function assertUnambiguous(body: JsonBody, tree: KeyTree, objectPath = ''): void {
  if (tree.size === 0) return;
  const present = body.fields(objectPath);
  for (const [key, children] of tree) {
    const folded = foldKey(key);
    const exact = present.filter((m) => m.key === key);
    if (present.some((m) => m.key !== key && foldKey(m.key) === folded)) {
      throw new GatewayError('ambiguous-field', { detail: `A key differs from ${describePath(objectPath, key)} only in letter case.` });
    }
    if (exact.length > 1) throw new GatewayError('ambiguous-field', { detail: `${describePath(objectPath, key)} is sent more than once.` });
    if (children.size > 0 && exact[0]?.kind === 'object') assertUnambiguous(body, children, objectPath ? `${objectPath}.${key}` : key);
  }
}

function describePath(objectPath: string, key: string): string {
  return objectPath ? `${objectPath}.${key}` : key;
}

/** The one value of a field (repeats were refused before), undefined when absent. */
function valueAt(body: JsonBody, path: string): JsonField | undefined {
  return body.get(path)[0];
}

/** A JSON field as the scope rules see it (scope-check.ts). */
function scopeValue(field: JsonField | undefined): ScopeValue {
  if (field === undefined || field.kind === 'null') return null;
  if (field.kind === 'string' || field.kind === 'number' || field.kind === 'boolean') return String(field.value);
  return { kind: field.kind };
}

/** Scope and draft checks of a JSON body or event; numbers and booleans never match an id allowlist. */
function checkJson(body: JsonBody, policy: FieldPolicy, options: ScopeOptions, lists: ReturnType<typeof allowlists>): void {
  checkScopes(policy, lists, (path) => {
    const field = valueAt(body, path);
    if (field === undefined) return [];
    return [field.kind === 'string' ? (field.value as string) : field.kind === 'null' ? null : { kind: field.kind }];
  });
  checkDrafts(policy, options, (path) => scopeValue(valueAt(body, path)));
}

/** A UTF-8 byte-order mark: JSON forbids it (RFC 8259 section 8.1), yet some decoders skip it. */
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

function startsLikeObject(bytes: Buffer): boolean {
  for (let i = bytes.subarray(0, 3).equals(BOM) ? 3 : 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (byte === 0x7b) return true;
    // Leading JSON whitespace (space, tab, LF, CR) is skipped; anything else is not an event.
    if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) return false;
  }
  return false;
}

export function createFieldRules(endpoint: Endpoint, options: ScopeOptions): FieldRules {
  const lists = allowlists(options);
  return {
    rewriteBody: endpoint.body.kind === 'json' ? bodyRule(endpoint.body.fields, options, lists) : null,
    rewriteQuery: createQueryRule(endpoint.query, options, lists),
    rewriteEvent: endpoint.events ? eventRule(endpoint.events, options, lists) : null,
    filterResponse: endpoint.response && options.botInfo !== 'full' ? responseRule(endpoint.response.key, endpoint.response.keep) : null,
  };
}

function bodyRule(policy: FieldPolicy, options: ScopeOptions, lists: ReturnType<typeof allowlists>): (bytes: Buffer, sessionName: string) => Buffer {
  const tree = keyTree(controlledPaths(policy));
  const users = options.enforceUserId ? (policy.user ?? []) : [];
  return (bytes, sessionName) => {
    const body = parseJsonObject(bytes);
    assertUnambiguous(body, tree);
    checkJson(body, policy, options, lists);
    for (const path of users) body.force(path, sessionName);
    return body.toBuffer();
  };
}

/**
 * Client events of a WebSocket. A frame that could name a controlled event type is read with the
 * strict lossless parser, so a repeated or case-shifted `event_type` cannot hide a chat.update
 * from the gateway while Coze's decoder reads it. Whether it could is decided on the raw bytes:
 * a JSON string decodes to `chat.update` only if the frame holds those bytes or a `\u` escape,
 * so audio frames (tens of KiB of base64) pass after two native byte searches instead of a parse.
 * A frame the strict parser refuses (a byte-order mark, bytes after the object, a comment) is
 * refused too when a lenient decoder reads it or it names a controlled event type: Coze's decoder
 * might accept it, and the user id would reach Coze unforced. Anything else is not an event (raw
 * audio may start with `{`) and passes. A frame that must be read and is over
 * MAX_CHECKED_EVENT_BYTES is refused unread: the strict parse costs about 70 ms a MiB of the
 * event loop every user shares, and the events it reads are small settings, not audio.
 */
const MAX_CHECKED_EVENT_BYTES = 256 * 1024;

function eventRule(events: Readonly<Record<string, FieldPolicy>>, options: ScopeOptions, lists: ReturnType<typeof allowlists>): ((frame: Buffer, sessionName: string) => Buffer | undefined) | null {
  // An event is controlled when it has a user field to force, or a scope or draft field to check.
  const active = (policy: FieldPolicy) => (options.enforceUserId && (policy.user?.length ?? 0) > 0) || controlledPaths({ ...policy, user: [] }).length > 0;
  const rules = new Map(
    Object.entries(events)
      .filter(([, policy]) => active(policy))
      .map(([type, policy]) => [type, { policy, tree: keyTree(controlledPaths(policy)) }]),
  );
  if (rules.size === 0) return null;
  const typeTree = keyTree(['event_type']);
  const types = [...rules.keys()];
  const markers = [...types, '\\u'].map((m) => Buffer.from(m));
  return (frame, sessionName) => {
    if (!startsLikeObject(frame) || !markers.some((m) => frame.includes(m))) return frame;
    if (frame.length > MAX_CHECKED_EVENT_BYTES) return undefined;
    let event: JsonBody;
    try {
      event = parseJsonObject(frame);
    } catch {
      return looseJson(frame) || namesEventType(frame, types) ? undefined : frame;
    }
    try {
      assertUnambiguous(event, typeTree);
      const type = valueAt(event, 'event_type');
      const rule = type?.kind === 'string' ? rules.get(type.value as string) : undefined;
      if (!rule) return frame;
      assertUnambiguous(event, rule.tree);
      checkJson(event, rule.policy, options, lists);
      for (const path of options.enforceUserId ? (rule.policy.user ?? []) : []) {
        // Without its top-level object (`data`) the event changes nothing of the session, and
        // Coze keeps the session's defaults: nothing names another user.
        if (event.get(path.split('.')[0] as string).some((f) => f.kind === 'object')) event.force(path, sessionName, { nonObjectParent: 'replace' });
      }
      return event.toBuffer();
    } catch (err) {
      if (err instanceof GatewayError) return undefined;
      throw err;
    }
  };
}

/** True when a lenient parser reads the frame although the strict one refused it. */
function looseJson(frame: Buffer): boolean {
  try {
    JSON.parse(frame.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

// jsonc-parser's SyntaxKind is a const enum, whose values verbatimModuleSyntax cannot import; the
// types check that these are its values.
const STRING_TOKEN: SyntaxKind.StringLiteral = 10;
const EOF_TOKEN: SyntaxKind.EOF = 17;

/**
 * True when the frame holds one of `types` as it is, or as a JSON string once its escapes are
 * resolved (`"chat\u002eupdate"`). The scanner reads tokens one after another, without recursion,
 * so no nesting can overflow the stack, and it skips what it cannot read.
 */
function namesEventType(frame: Buffer, types: readonly string[]): boolean {
  if (types.some((type) => frame.includes(type))) return true;
  const scanner = createScanner(frame.toString('utf8'), true);
  for (let token = scanner.scan(); token !== EOF_TOKEN; token = scanner.scan()) {
    if (token === STRING_TOKEN && types.includes(scanner.getTokenValue())) return true;
  }
  return false;
}

function responseRule(key: string, keep: readonly string[]): (bytes: Buffer) => Buffer {
  const kept = new Set(keep);
  return (bytes) => {
    const text = objectText(bytes);
    const root = rootMembers(text);
    // A Coze error answer (code != 0) carries no bot: it passes as Coze wrote it. The first
    // `code`, as the lossless parser reads a repeated key.
    const code = root.find((m) => m.key === 'code');
    if (code && !isZero(text.slice(code.valueStart, code.end))) return bytes;
    const reduced = keepMembers(text, root, key, kept);
    return reduced === undefined ? bytes : Buffer.from(reduced, 'utf8');
  };
}

/** A JSON number (not a string) equal to 0: `0`, `-0`, `0.0`, `0e5`. */
function isZero(value: string): boolean {
  return /^-?\d/.test(value) && Number(value) === 0;
}
