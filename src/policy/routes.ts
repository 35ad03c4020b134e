import type { RouteRule } from '../config/schema.js';

/** The route label of a request that matched no rule. */
export const UNMATCHED_ROUTE = 'unmatched';

export interface RouteMatch {
  name: string;
  params: Record<string, string>;
}

interface CompiledRule {
  name: string;
  method: string;
  pattern: RegExp;
  params: string[];
}

/**
 * The route allowlist, compiled once at start-up. A `:param` matches one segment of
 * `[A-Za-z0-9_-]`; methods and paths match exactly (case-sensitive; HEAD is not GET).
 * The token endpoint can never be allowed, whatever the configuration says.
 */
export function createRoutePolicy(rules: readonly RouteRule[]): { match(method: string, path: string): RouteMatch | undefined; names: readonly string[] } {
  const compiled: CompiledRule[] = rules.map((rule) => {
    if (rule.path.startsWith('/api/permission')) throw new TypeError(`route "${rule.name}": /api/permission/* is never proxied`);
    const params: string[] = [];
    const source = rule.path
      .split('/')
      .map((segment) => {
        if (segment.startsWith(':')) {
          params.push(segment.slice(1));
          return '([A-Za-z0-9_-]+)';
        }
        return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      })
      .join('/');
    return { name: rule.name, method: rule.method, pattern: new RegExp(`^${source}$`), params };
  });
  const names = [...new Set(rules.map((r) => r.name))];

  return {
    names,
    match(method, path) {
      for (const rule of compiled) {
        if (rule.method !== method) continue;
        const m = rule.pattern.exec(path);
        if (!m) continue;
        const params: Record<string, string> = {};
        rule.params.forEach((name, i) => {
          params[name] = m[i + 1] as string;
        });
        return { name: rule.name, params };
      }
      return undefined;
    },
  };
}
