import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { IDENTITY_SOURCES } from '../auth/identity.js';
import { watchFile, type WatchedFile, type WatchedFileOptions } from '../config/watched-file.js';

/** Closed set: the budgets, as named in the config, the overrides file and the refusal detail. */
export const BUDGET_NAMES = ['tokensPerDay', 'tokensPerMonth', 'requestsPerDay'] as const;
export type BudgetName = (typeof BUDGET_NAMES)[number];

/** Closed set: what a budget counts, the `budget` label of coze_gateway_budget_refusals_total. */
export const BUDGET_KINDS = ['tokens', 'requests'] as const;
export type BudgetKind = (typeof BUDGET_KINDS)[number];

/** A limit per budget; null is "no limit". */
export type BudgetLimits = Readonly<Record<BudgetName, number | null>>;

/** What an override sets: a number (0 refuses everything), `unlimited`, or nothing (the global value). */
export type BudgetOverride = Partial<Record<BudgetName, number | null>>;

export interface OverrideTable {
  /** The override of an identity: its own source's entry first, then the subject's entry for any source. */
  lookup(source: string, subject: string): BudgetOverride | undefined;
  readonly size: number;
}

const limit = z.union([z.number().int().min(0), z.literal('unlimited')]).optional();
const fileSchema = z.array(
  z
    .object({
      subject: z.string().min(1).max(256),
      source: z.enum(IDENTITY_SOURCES).optional(),
      tokensPerDay: limit,
      tokensPerMonth: limit,
      requestsPerDay: limit,
    })
    .strict(),
);

export const EMPTY_OVERRIDES: OverrideTable = { lookup: () => undefined, size: 0 };

/**
 * Parses the file's text; throws an Error that names the entry and the problem. A file with no
 * document at all (empty, or comments only) is no overrides at start-up, and an error on a reload:
 * there it is most often a write caught half way (truncated, not yet written), and taking it would
 * lift every override, suspensions included. `[]` is no overrides in both.
 */
export function parseOverrides(text: string, options: { reload?: boolean } = {}): OverrideTable {
  const raw: unknown = parseYaml(text);
  if ((raw === null || raw === undefined) && options.reload) throw new Error('the file is empty (a write in progress?); write [] for no overrides');
  const parsed = fileSchema.safeParse(raw ?? []);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `entry ${issue.path.map(String).join('.')}` : 'the file';
    throw new Error(`${where}: ${issue?.message ?? 'invalid'} (expected a list of {subject, source?, tokensPerDay?, tokensPerMonth?, requestsPerDay?}, each a number or "unlimited")`);
  }
  const table = new Map<string, BudgetOverride>();
  parsed.data.forEach((entry, index) => {
    const key = `${entry.source ?? ''}\u0000${entry.subject}`;
    if (table.has(key)) throw new Error(`entry ${index} repeats subject "${entry.subject}"${entry.source ? ` for source ${entry.source}` : ''}`);
    const override: BudgetOverride = {};
    for (const name of BUDGET_NAMES) {
      const value = entry[name];
      if (value !== undefined) override[name] = value === 'unlimited' ? null : value;
    }
    table.set(key, override);
  });
  return {
    lookup: (source, subject) => table.get(`${source}\u0000${subject}`) ?? table.get(`\u0000${subject}`),
    size: table.size,
  };
}

export type OverridesWatcher = WatchedFile<OverrideTable>;

/** budgets.overridesFile, loaded at start-up (a bad file stops the gateway) and reloaded when it changes (watched-file.ts). */
export function watchOverrides(options: { path: string; pollMs?: number; onReload?: WatchedFileOptions<OverrideTable>['onReload'] }): OverridesWatcher {
  return watchFile({ ...options, parse: parseOverrides, size: (table) => table.size });
}
