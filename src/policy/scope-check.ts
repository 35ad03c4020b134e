import { GatewayError, type ErrorReason } from '../errors.js';
import type { FieldPolicy, Scope } from './endpoints.js';

/** What the configuration decides for every endpoint's fields (policy.* settings). */
export interface ScopeOptions {
  enforceUserId: boolean;
  allowedBotIds?: readonly string[] | undefined;
  allowedWorkflowIds?: readonly string[] | undefined;
  allowedAppIds?: readonly string[] | undefined;
  /** policy.allowDrafts: callers may pick drafts and pinned versions. */
  allowDrafts: boolean;
  /** policy.botInfo: `display` reduces bot info answers to display fields. */
  botInfo: 'display' | 'full';
}

/**
 * A field's value as the scope rules see it: a string, or null when absent or JSON null. Other
 * JSON values (numbers, booleans, objects) arrive as their text, or as an object that can match
 * nothing: an id allowlist only ever matches a string.
 */
export type ScopeValue = string | null | { readonly kind: string };

const REFUSALS: Record<Exclude<Scope, 'user'>, ErrorReason> = { bot: 'bot-forbidden', workflow: 'workflow-forbidden', app: 'app-forbidden' };

export function allowlists(options: ScopeOptions): Record<Exclude<Scope, 'user'>, ReadonlySet<string> | undefined> {
  const set = (ids: readonly string[] | undefined) => (ids?.length ? new Set(ids) : undefined);
  return { bot: set(options.allowedBotIds), workflow: set(options.allowedWorkflowIds), app: set(options.allowedAppIds) };
}

/**
 * Every value sent for a bot, workflow or app id must be on its allowlist (when one is set).
 * `values` lists every occurrence of a path (the query and a path parameter may both carry one).
 */
export function checkScopes(policy: FieldPolicy, lists: ReturnType<typeof allowlists>, values: (path: string) => readonly ScopeValue[]): void {
  for (const scope of ['bot', 'workflow', 'app'] as const) {
    const allowed = lists[scope];
    if (!allowed) continue;
    for (const path of policy[scope] ?? []) {
      for (const value of values(path)) {
        if (value === null) continue;
        if (typeof value !== 'string' || !allowed.has(value)) throw new GatewayError(REFUSALS[scope], { detail: `(${path})` });
      }
    }
  }
}

/**
 * Fields that pick a draft or a pinned version  are refused, not rewritten:
 * running another version than the one asked for would be a silent surprise, a 403 says what to
 * change. A published value (`publish_status: published_online`, `is_published=true`,
 * `draft_mode: false`) and an empty one pass.
 */
export function checkDrafts(policy: FieldPolicy, options: ScopeOptions, value: (path: string) => ScopeValue): void {
  if (options.allowDrafts) return;
  for (const draft of policy.draft ?? []) {
    const v = value(draft.field);
    if (v === null || v === '') continue;
    if (typeof v !== 'string' || !draft.published.includes(v)) {
      throw new GatewayError('draft-forbidden', { detail: `(${draft.field}${draft.published.length ? ` must be ${draft.published.join(' or ')}` : ' is not accepted'})` });
    }
  }
}

/** The type of an `entity_type`/`entity_id` pair names the allowlist its id is checked against. */
export function checkEntity(policy: FieldPolicy, lists: ReturnType<typeof allowlists>, value: (name: string) => ScopeValue): void {
  if (!policy.entity) return;
  const id = value(policy.entity.id);
  if (id === null || id === '') return;
  const type = value(policy.entity.type);
  const scope = type === 'bot' || type === 'workflow' || type === 'app' ? type : undefined;
  if (!scope) throw new GatewayError('ambiguous-field', { detail: `${policy.entity.id} needs ${policy.entity.type} bot, workflow or app.` });
  const allowed = lists[scope];
  if (allowed && (typeof id !== 'string' || !allowed.has(id))) throw new GatewayError(REFUSALS[scope], { detail: `(${policy.entity.id})` });
}
