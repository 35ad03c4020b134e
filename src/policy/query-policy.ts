import { GatewayError } from '../errors.js';
import { ENDPOINTS, QUERY_IDENTITY_FIELDS, type FieldPolicy } from './endpoints.js';
import { checkDrafts, checkEntity, checkScopes, type allowlists, type ScopeOptions } from './scope-check.js';

/** One `name=value` pair of a query, as sent and as a decoder reads it. */
export interface QueryPair {
  readonly raw: string;
  readonly name: string;
  readonly value: string;
}

export interface ParsedQuery {
  /** The query as sent. */
  readonly raw: string;
  /** Every pair but the credential, in order. */
  readonly pairs: readonly QueryPair[];
  /** Every `authorization` parameter (any letter case), taken out: never forwarded. More than one is the caller's error (admit.ts). */
  readonly credentials: readonly string[];
}

/** Returns the query string to forward, after checking and forcing; throws a GatewayError to refuse. */
export type QueryRule = (query: ParsedQuery, params: Readonly<Record<string, string>>, sessionName: string) => string;

function fold(name: string): string {
  return name.toUpperCase().toLowerCase();
}

/**
 * Every query name the gateway controls anywhere: the names of every endpoint's query policy
 * and the identity fields. Each is checked on every request, whatever the endpoint: a decoder
 * upstream may read it from any query.
 */
const CONTROLLED: ReadonlyMap<string, string> = (() => {
  const names = new Set<string>(QUERY_IDENTITY_FIELDS);
  const add = (policy: FieldPolicy) => {
    for (const list of [policy.user, policy.bot, policy.workflow, policy.app]) for (const n of list ?? []) names.add(n);
    for (const d of policy.draft ?? []) names.add(d.field);
    if (policy.entity) names.add(policy.entity.type).add(policy.entity.id);
  };
  for (const e of ENDPOINTS) add(e.query);
  return new Map([...names].map((n) => [fold(n), n]));
})();

const CREDENTIAL = 'authorization';

/** The WHATWG urlencoded reading of one pair (`+` is a space, percent escapes decoded), as Node and browsers read it. */
function decodePair(raw: string): [string, string] {
  const first = new URLSearchParams(raw).entries().next();
  return first.done ? ['', ''] : first.value;
}

/**
 * Reads a query once, before authentication, and refuses what a decoder upstream could read
 * another way than the gateway (issue 15, finding 5): a controlled name that is percent-encoded
 * (`%61uthorization`, `user%5Fid`), in another letter case (`USER_ID`), or repeated. The
 * credential parameter is taken out in any letter case (browsers' WebSocket upgrades).
 */
export function parseQuery(raw: string): ParsedQuery {
  if (raw === '') return { raw, pairs: [], credentials: [] };
  const pairs: QueryPair[] = [];
  const seen = new Map<string, number>();
  const credentials: string[] = [];
  for (const part of raw.split('&')) {
    if (part === '') continue;
    const [name, value] = decodePair(part);
    const rawName = part.split('=', 1)[0] as string;
    const folded = fold(name);
    if (folded === CREDENTIAL) {
      if (rawName.toLowerCase() !== CREDENTIAL) throw new GatewayError('ambiguous-field', { detail: 'The authorization query parameter name is percent-encoded.' });
      credentials.push(value);
      continue;
    }
    const canonical = CONTROLLED.get(folded);
    if (canonical !== undefined) {
      if (rawName !== name) throw new GatewayError('ambiguous-field', { detail: `The query parameter name ${canonical} is percent-encoded.` });
      if (name !== canonical) throw new GatewayError('ambiguous-field', { detail: `A query parameter differs from ${canonical} only in letter case.` });
      const count = (seen.get(canonical) ?? 0) + 1;
      if (count > 1) throw new GatewayError('ambiguous-field', { detail: `The query parameter ${canonical} is repeated.` });
      seen.set(canonical, count);
    }
    pairs.push({ raw: part, name, value });
  }
  return { raw, pairs, credentials };
}

/**
 * The query rule of one endpoint. Identity fields the endpoint takes in its query are forced to
 * the session_name (added when absent); any other identity field in a query is refused
 * (400 identity-in-query), since Coze may read the query as well as the body. Bot, workflow and
 * app ids (query and path parameters) are checked against their allowlists, draft and version
 * parameters are refused unless policy.allowDrafts.
 */
export function createQueryRule(policy: FieldPolicy, options: ScopeOptions, lists: ReturnType<typeof allowlists>): QueryRule {
  const forced = options.enforceUserId ? (policy.user ?? []) : [];
  const refused = options.enforceUserId ? QUERY_IDENTITY_FIELDS.filter((n) => !forced.includes(n)) : [];
  return (query, params, sessionName) => {
    const one = (name: string) => query.pairs.find((p) => p.name === name)?.value ?? null;
    for (const name of refused) {
      if (one(name) !== null) throw new GatewayError('identity-in-query', { detail: `(${name})` });
    }
    checkScopes(policy, lists, (name) => [...(params[name] !== undefined ? [params[name] as string] : []), ...query.pairs.filter((p) => p.name === name).map((p) => p.value)]);
    checkDrafts(policy, options, one);
    checkEntity(policy, lists, one);

    if (forced.length === 0 && query.credentials.length === 0) return query.raw;
    const parts = query.pairs.map((p) => (forced.includes(p.name) ? `${p.name}=${encodeURIComponent(sessionName)}` : p.raw));
    for (const name of forced) if (one(name) === null) parts.push(`${name}=${encodeURIComponent(sessionName)}`);
    return parts.join('&');
  };
}
