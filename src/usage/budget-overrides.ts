import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { IDENTITY_SOURCES } from '../auth/identity.js';

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

export interface OverridesWatcher {
  readonly current: OverrideTable;
  /** Reads the file again now (the watcher and the poll call this); true when a new version took effect. */
  reload(): boolean;
  close(): void;
}

/**
 * budgets.overridesFile, loaded at start-up (a bad file stops the gateway) and reloaded when it
 * changes: fs.watch on its folder (a Kubernetes ConfigMap swaps a symlink, which a watch on the
 * file itself would miss), and a poll in case the file system sends no events (NFS, some
 * container mounts). A file that no longer parses keeps the last good version in force, and is
 * reported (log and metric) until it is fixed.
 */
export function watchOverrides(options: {
  path: string;
  pollMs?: number;
  onReload?: (outcome: 'ok' | 'error', detail: { entries?: number; error?: string }) => void;
}): OverridesWatcher {
  const { path } = options;
  const read = () => readFileSync(path, 'utf8');
  let text = read();
  let current = parseOverrides(text);
  let lastFailure: string | undefined;
  const digest = (t: string) => createHash('sha256').update(t).digest('hex');
  let seen = digest(text);

  function reload(): boolean {
    let next: string;
    try {
      next = read();
    } catch (err) {
      fail(`cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      return false;
    }
    const hash = digest(next);
    if (hash === seen) {
      // Back to the version in force after a bad edit: reported, so the next bad edit is news again.
      if (lastFailure !== undefined) {
        lastFailure = undefined;
        options.onReload?.('ok', { entries: current.size });
      }
      return false;
    }
    try {
      current = parseOverrides(next, { reload: true });
    } catch (err) {
      fail((err as Error).message);
      return false;
    }
    seen = hash;
    text = next;
    lastFailure = undefined;
    options.onReload?.('ok', { entries: current.size });
    return true;
  }
  function fail(error: string): void {
    // Reported once per distinct problem, not once per poll.
    if (error === lastFailure) return;
    lastFailure = error;
    options.onReload?.('error', { error });
  }

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), { persistent: false }, (_event, name) => {
      if (name === null || name === basename(path) || name.startsWith('..')) reload();
    });
    watcher.on('error', () => watcher?.close());
  } catch {
    // No file events here: the poll alone notices changes.
  }
  const poll = setInterval(reload, options.pollMs ?? 5000);
  poll.unref();

  return {
    get current() {
      return current;
    },
    reload,
    close() {
      clearInterval(poll);
      watcher?.close();
    },
  };
}
