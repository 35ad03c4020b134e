import type { RouteEntry } from '../config/schema.js';
import { ENDPOINTS, FRAMINGS, PASSTHROUGH_QUERY, USAGE_SHAPES, type Endpoint } from './endpoints.js';
import { createFieldRules, type FieldRules, type ScopeOptions } from './field-policy.js';

/** The route label of a request that matched no endpoint. */
export const UNMATCHED_ROUTE = 'unmatched';
/** The route label of a CORS preflight, which the gateway answers itself whatever its path. */
export const PREFLIGHT_ROUTE = 'preflight';

export type Params = Readonly<Record<string, string>>;

/** An endpoint as the gateway runs it: its table entry plus its rules, built once at start-up. */
export interface CompiledEndpoint extends Endpoint {
  readonly rules: FieldRules;
}

export interface RouteMatch {
  endpoint: CompiledEndpoint;
  params: Params;
}

export interface RouteTable {
  /** The entry itself travels with the match: nothing is looked up by name afterwards. */
  match(method: string, path: string): RouteMatch | undefined;
  readonly endpoints: readonly CompiledEndpoint[];
  /** The distinct labels, for the metrics. */
  readonly names: readonly string[];
  /** Compiles an endpoint outside the table (token vending) with the same rules. */
  compile(endpoint: Endpoint): CompiledEndpoint;
}

/** `:param` matches one segment of [A-Za-z0-9_-]; everything else matches itself, case-sensitively. */
const PARAM_SEGMENT = /^[A-Za-z0-9_-]+$/;

interface Pattern {
  regex: RegExp;
  params: string[];
}

function compilePattern(path: string): Pattern {
  const params: string[] = [];
  const source = path
    .split('/')
    .map((segment) => {
      if (segment.startsWith(':')) {
        params.push(segment.slice(1));
        return '([A-Za-z0-9_-]+)';
      }
      return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return { regex: new RegExp(`^${source}$`), params };
}

/** True when some concrete path matches both patterns (so one could shadow the other). */
export function patternsOverlap(a: string, b: string): boolean {
  const sa = a.split('/');
  const sb = b.split('/');
  if (sa.length !== sb.length) return false;
  return sa.every((x, i) => {
    const y = sb[i] as string;
    if (x.startsWith(':') && y.startsWith(':')) return true;
    if (x.startsWith(':')) return PARAM_SEGMENT.test(y);
    if (y.startsWith(':')) return PARAM_SEGMENT.test(x);
    return x === y;
  });
}

/**
 * Checks the table itself: every entry states what it must (absent is an error, an explicit
 * empty is a decision). Returns the problems, one line each.
 */
export function checkEndpoints(endpoints: readonly Endpoint[]): string[] {
  const problems: string[] = [];
  const byMethodPath = new Map<string, string>();
  const pathOfName = new Map<string, string>();
  for (const e of endpoints) {
    const where = `${e.name} (${e.method} ${e.path})`;
    if (e.path.startsWith('/api/permission')) problems.push(`${where}: /api/permission/* is never proxied`);
    const key = `${e.method} ${e.path}`;
    if (byMethodPath.has(key)) problems.push(`${where}: ${key} is already the endpoint ${byMethodPath.get(key)}`);
    byMethodPath.set(key, e.name);
    // One name may cover one path called with two methods (chat.retrieve), never two paths.
    const knownPath = pathOfName.get(e.name);
    if (knownPath !== undefined && knownPath !== e.path) problems.push(`${where}: the name ${e.name} already labels ${knownPath}`);
    pathOfName.set(e.name, e.path);
    if (e.transport === 'websocket' && e.events === undefined) problems.push(`${where}: a websocket endpoint must declare its events (even as {})`);
    if (e.transport !== 'websocket' && e.events !== undefined) problems.push(`${where}: only websocket endpoints have events`);
    if (e.framing !== undefined && e.transport !== 'sse') problems.push(`${where}: framing is for sse endpoints only`);
    if (e.framing !== undefined && !(FRAMINGS as readonly string[]).includes(e.framing)) problems.push(`${where}: unknown framing ${String(e.framing)}`);
    if (e.usage !== undefined && !(USAGE_SHAPES as readonly string[]).includes(e.usage)) problems.push(`${where}: unknown usage shape ${String(e.usage)}`);
    if (e.transport === 'websocket' && e.method !== 'GET') problems.push(`${where}: a websocket endpoint is a GET upgrade`);
    if ((e.method === 'GET' || e.method === 'DELETE') && e.body.kind !== 'none') problems.push(`${where}: a ${e.method} takes no body`);
  }
  return problems;
}

/**
 * The endpoints a configuration exposes. `policy.routes` narrows the built-in table and cannot
 * redefine it: a name enables a built-in endpoint; a {name, method, path} rule must be a built-in
 * endpoint's method and path (it then gets that endpoint's policy, whatever its name, which
 * becomes the label); a rule the gateway knows no policy for must say `passthrough: true`, and
 * may not overlap any built-in endpoint. `policy.disabledRoutes` removes built-in names.
 */
export function selectEndpoints(routes: readonly RouteEntry[] | undefined, disabled: readonly string[] = [], builtIn: readonly Endpoint[] = ENDPOINTS): { endpoints: Endpoint[]; problems: string[] } {
  const problems: string[] = [];
  const names = new Set(builtIn.map((e) => e.name));
  // Each selected endpoint with the built-in it comes from (none for a passthrough route).
  const selected: Array<{ endpoint: Endpoint; from: string | undefined }> = [];
  const add = (endpoint: Endpoint, from: string | undefined) => {
    if (!selected.some((s) => s.endpoint.method === endpoint.method && s.endpoint.path === endpoint.path)) selected.push({ endpoint, from });
  };
  (routes ?? builtIn.map((e) => e.name)).forEach((entry, i) => {
    const at = `policy.routes[${i}]`;
    if (typeof entry === 'string') {
      if (!names.has(entry)) problems.push(`${at}: "${entry}" is not a built-in endpoint (see docs/routes.md)`);
      for (const e of builtIn) if (e.name === entry) add(e, e.name);
      return;
    }
    const same = builtIn.find((e) => e.method === entry.method && e.path === entry.path);
    if (same) {
      if (entry.passthrough) problems.push(`${at}: ${entry.method} ${entry.path} is the built-in endpoint ${same.name}; its policy cannot be switched off (remove passthrough)`);
      else add({ ...same, name: entry.name }, same.name);
      return;
    }
    if (!entry.passthrough) {
      problems.push(`${at}: the gateway knows no policy for ${entry.method} ${entry.path} ("${entry.name}"); use a built-in endpoint (docs/routes.md), or set passthrough: true to forward it with no body or identity policy of its own`);
      return;
    }
    if (entry.path.startsWith('/api/permission')) {
      problems.push(`${at}: /api/permission/* is never proxied`);
      return;
    }
    const shadowed = builtIn.find((e) => e.method === entry.method && patternsOverlap(e.path, entry.path));
    if (shadowed) {
      problems.push(`${at}: ${entry.method} ${entry.path} overlaps the built-in endpoint ${shadowed.name} (${shadowed.path}), whose policy it could bypass`);
      return;
    }
    add({ name: entry.name, method: entry.method, path: entry.path as `/${string}`, transport: 'http', body: entry.method === 'GET' || entry.method === 'DELETE' ? { kind: 'none' } : { kind: 'stream' }, query: PASSTHROUGH_QUERY, passthrough: true, summary: 'Operator route with no policy of its own (passthrough).' }, undefined);
  });
  for (const name of disabled) {
    if (!names.has(name)) problems.push(`policy.disabledRoutes: "${name}" is not a built-in endpoint (see docs/routes.md)`);
  }
  const endpoints = selected.filter((s) => s.from === undefined || !disabled.includes(s.from)).map((s) => s.endpoint);
  if (problems.length === 0 && endpoints.length === 0) problems.push('policy.routes and policy.disabledRoutes leave no endpoint exposed');
  problems.push(...checkEndpoints(endpoints));
  return { endpoints, problems };
}

/**
 * Builds the route table once at start-up. A bad entry is a programmer or configuration error:
 * every problem is named in one TypeError (the config loader reports the same problems first,
 * by setting).
 */
export function createRouteTable(endpoints: readonly Endpoint[], options: ScopeOptions): RouteTable {
  const problems = checkEndpoints(endpoints);
  if (problems.length > 0) throw new TypeError(`invalid endpoint table:\n  - ${problems.join('\n  - ')}`);
  const compile = (endpoint: Endpoint): CompiledEndpoint => Object.freeze({ ...endpoint, rules: createFieldRules(endpoint, options) });
  const compiled = endpoints.map((endpoint) => ({ endpoint: compile(endpoint), pattern: compilePattern(endpoint.path) }));

  return {
    endpoints: compiled.map((c) => c.endpoint),
    names: [...new Set(endpoints.map((e) => e.name))],
    compile,
    match(method, path) {
      for (const { endpoint, pattern } of compiled) {
        if (endpoint.method !== method) continue;
        const m = pattern.regex.exec(path);
        if (!m) continue;
        const params: Record<string, string> = {};
        pattern.params.forEach((name, i) => {
          params[name] = m[i + 1] as string;
        });
        return { endpoint, params };
      }
      return undefined;
    },
  };
}
