import type { Identity } from '../auth/identity.js';
import { GatewayError } from '../errors.js';
import type { Endpoint } from '../policy/endpoints.js';
import { BUDGET_NAMES, type BudgetKind, type BudgetLimits, type BudgetName, type OverrideTable } from './budget-overrides.js';
import type { UsageCounter, UsageView } from './usage-counter.js';
import type { UsageWindow, UsageWindows } from './usage-windows.js';

const WINDOW_OF: Record<BudgetName, UsageWindow> = { tokensPerDay: 'day', tokensPerMonth: 'month', requestsPerDay: 'day' };
const KIND_OF: Record<BudgetName, BudgetKind> = { tokensPerDay: 'tokens', tokensPerMonth: 'tokens', requestsPerDay: 'requests' };
const WORDS: Record<BudgetName, string> = { tokensPerDay: 'daily token budget', tokensPerMonth: 'monthly token budget', requestsPerDay: 'daily request budget' };

export interface BudgetsOptions {
  /** budgets.tokensPerDay, tokensPerMonth, requestsPerDay: 0 is off. */
  limits: Record<BudgetName, number>;
  overrides: () => OverrideTable;
  counter: UsageCounter;
  windows: UsageWindows;
  now: () => number;
  onRefused?: (window: UsageWindow, kind: BudgetKind) => void;
}

export interface Budgets {
  /**
   * The budget step of admission, decided synchronously from this replica's view (never a
   * Redis round trip): refuses a caller over a budget with 429 budget-exceeded, else counts the
   * request. Token budgets spare the endpoint table's token-free endpoints (reads, polls,
   * uploads). The gateway's own endpoints are never counted: POST /gateway/token is checked
   * (a vended token spends tokens where the gateway cannot see them), GET /gateway/usage
   * (local and token-free) never refused. Counts are the session's (`sessionName`, as for the
   * rate limit: admit.ts); the limits are the identity's, for overrides name subjects.
   *
   * Returns what takes the count back (undefined when nothing was counted), for a request the
   * gateway then does not forward after all (docs/usage-and-budgets.md). Counting at once rather
   * than once forwarded keeps the check and the count together: requests admitted side by side
   * (each waiting for a mint, say) cannot all pass a budget that has room for one.
   */
  admit(endpoint: Pick<Endpoint, 'transport' | 'tokenFree'>, identity: Identity, sessionName: string): (() => void) | undefined;
  /**
   * The limits in force for an identity, its override applied. An override names a subject, so
   * it sets the limits of each of that subject's sessions (one per tenant, say), each counted apart.
   */
  limitsOf(identity: Identity): BudgetLimits;
}

export function createBudgets(options: BudgetsOptions): Budgets {
  const global: BudgetLimits = {
    tokensPerDay: options.limits.tokensPerDay || null,
    tokensPerMonth: options.limits.tokensPerMonth || null,
    requestsPerDay: options.limits.requestsPerDay || null,
  };
  const globalOff = BUDGET_NAMES.every((name) => global[name] === null);

  function limitsOf(identity: Identity): BudgetLimits {
    const table = options.overrides();
    const override = table.size > 0 ? table.lookup(identity.source, identity.subject) : undefined;
    return override ? { ...global, ...override } : global;
  }

  function refuse(name: BudgetName, limit: number, view: UsageView): never {
    const window = WINDOW_OF[name];
    const kind = KIND_OF[name];
    options.onRefused?.(window, kind);
    const { endsAtMs } = view[window];
    const resetAt = options.windows.localIso(endsAtMs);
    const seconds = Math.max(1, Math.ceil((endsAtMs - options.now()) / 1000));
    throw new GatewayError('budget-exceeded', {
      detail: `The ${WORDS[name]} of this identity (${limit} ${kind}) is used up; it resets at ${resetAt} (${options.windows.timeZone}).`,
      headers: { 'retry-after': String(seconds) },
      detailFields: { budget: name, limit, reset_at: resetAt, reset_at_unix: Math.floor(endsAtMs / 1000) },
    });
  }

  return {
    limitsOf,
    admit(endpoint, identity, sessionName) {
      const local = endpoint.transport === 'local';
      if (local && endpoint.tokenFree) return;
      const limits = globalOff && options.overrides().size === 0 ? global : limitsOf(identity);
      if (limits.requestsPerDay !== null || limits.tokensPerDay !== null || limits.tokensPerMonth !== null) {
        const view = options.counter.view(sessionName);
        // Of the budgets used up, the one whose window ends last: its reset is when a retry can pass.
        let exhausted: BudgetName | undefined;
        const check = (name: BudgetName, used: number) => {
          const limit = limits[name];
          if (limit === null || used < limit) return;
          if (exhausted === undefined || view[WINDOW_OF[name]].endsAtMs > view[WINDOW_OF[exhausted]].endsAtMs) exhausted = name;
        };
        check('requestsPerDay', view.day.requests);
        if (!endpoint.tokenFree) {
          check('tokensPerDay', view.day.total);
          check('tokensPerMonth', view.month.total);
        }
        if (exhausted !== undefined) refuse(exhausted, limits[exhausted] as number, view);
      }
      if (local) return undefined;
      options.counter.record(sessionName, { requests: 1 });
      const countedAt = options.now();
      let counted = true;
      return () => {
        if (!counted) return;
        counted = false;
        // Only in the day it was counted in: taken from the next one, it would lend that day a request.
        if (options.windows.at(options.now()).day.label === options.windows.at(countedAt).day.label) options.counter.record(sessionName, { requests: -1 });
      };
    },
  };
}
