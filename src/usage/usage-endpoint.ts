import type { ServerResponse } from 'node:http';
import type { Identity } from '../auth/identity.js';
import { sendPrivateJson } from '../http/private-json.js';
import type { BudgetLimits } from './budget-overrides.js';
import type { UsageView, WindowView } from './usage-counter.js';
import type { UsageWindows } from './usage-windows.js';

export interface UsageReportDeps {
  windows: UsageWindows;
  /** The session's counts, as fresh as the shared store can make them; `shared` false when it could not. */
  read(sessionName: string): Promise<{ view: UsageView; shared: boolean }>;
  limitsOf(identity: Identity): BudgetLimits;
}

const remaining = (limit: number | null, used: number) => (limit === null ? null : Math.max(0, limit - used));

function windowJson(windows: UsageWindows, view: WindowView, budget: { tokens: number | null; requests?: number | null }) {
  return {
    window: view.label,
    resets_at: windows.localIso(view.endsAtMs),
    resets_at_unix: Math.floor(view.endsAtMs / 1000),
    requests: view.requests,
    input_tokens: view.input,
    output_tokens: view.output,
    total_tokens: view.total,
    budget: { total_tokens: budget.tokens, ...('requests' in budget ? { requests: budget.requests } : {}) },
    remaining: { total_tokens: remaining(budget.tokens, view.total), ...('requests' in budget ? { requests: remaining(budget.requests ?? null, view.requests) } : {}) },
  };
}

/**
 * `GET /gateway/usage`: the caller's own usage and what is left of its budgets, this day and
 * this month (docs/usage-and-budgets.md has the JSON). The figures are those of the caller's
 * session, the unit budgets count (admit.ts), derived from the authenticated identity; nothing
 * in the request can name another, so nobody reads anyone else's figures. The answer is
 * personal: never stored by a cache.
 */
export async function serveUsage(res: ServerResponse, identity: Identity, sessionName: string, deps: UsageReportDeps): Promise<void> {
  const { view, shared } = await deps.read(sessionName);
  const limits = deps.limitsOf(identity);
  sendPrivateJson(res, {
    identity: { source: identity.source, subject: identity.subject },
    session_name: sessionName,
    time_zone: deps.windows.timeZone,
    shared,
    day: windowJson(deps.windows, view.day, { tokens: limits.tokensPerDay, requests: limits.requestsPerDay }),
    month: windowJson(deps.windows, view.month, { tokens: limits.tokensPerMonth }),
  });
}
