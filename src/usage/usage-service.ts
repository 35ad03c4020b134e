import type { GatewayConfig } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import type { Endpoint } from '../policy/endpoints.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { EMPTY_OVERRIDES, watchOverrides, type OverridesWatcher } from './budget-overrides.js';
import { createBudgets, type Budgets } from './budgets.js';
import { createUsageCounter, identityTag, type SharedUsageStore, type UsageCounter } from './usage-counter.js';
import type { UsageReportDeps } from './usage-endpoint.js';
import { createChatFollowUps, type ChatFollowUps, type RetrieveResult } from './chat-follow-up.js';
import { createUsageObservers, type OpenChat, type RequestUsage } from './usage-observer.js';
import { createUsageWindows } from './usage-windows.js';

export interface UsageService {
  /** The budget step of admission (synchronous). */
  budgets: Budgets;
  /** A watcher for one answer or socket of `endpoint`, counting for the session; undefined for endpoints that report no usage. */
  track(endpoint: Pick<Endpoint, 'name' | 'usage'>, sessionName: string, tokenKey?: string): RequestUsage | undefined;
  /** What GET /gateway/usage reads. */
  report: UsageReportDeps;
  counter: UsageCounter;
  /** Chats followed up by the gateway itself; undefined when budgets.followUp.enabled is off or nothing can retrieve. */
  followUps: ChatFollowUps | undefined;
  /** Writes what is not in Redis yet (bounded wait) and stops the timers. */
  close(): Promise<void>;
}

export interface UsageServiceOptions {
  budgets: GatewayConfig['budgets'];
  store?: SharedUsageStore | undefined;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Retrieves a chat at Coze for its follow-up (chat-retrieve.ts); without it chats are not followed up. */
  retrieveChat?: ((chat: OpenChat) => Promise<RetrieveResult>) | undefined;
  /** The clock of the windows (days, months) and of the sync timing; tests move it across midnight. */
  now?: () => number;
}

/** The observer's id of a chat's count (usage-observer.ts). */
const CHAT_ID = 'chat:';
/** How long GET /gateway/usage waits for Redis before it answers from this replica's view. */
const REPORT_SYNC_TIMEOUT_MS = 1000;

/**
 * Per-session usage and budgets (issue 18), wired: the windows in the configured time zone,
 * the counter (Redis-shared when a store is given), the overrides file, the budget gate of
 * admission, the per-request usage watchers, and what the usage endpoint reports.
 */
export function createUsageService(options: UsageServiceOptions): UsageService {
  const now = options.now ?? Date.now;
  const { metrics, logger } = options;
  const windows = createUsageWindows(options.budgets.timeZone);
  const counter = createUsageCounter({
    windows,
    store: options.store,
    syncIntervalMs: options.budgets.syncIntervalMs,
    now,
    onSyncError: () => metrics.redisErrors.labels('usage').inc(),
  });
  let overrides: OverridesWatcher | undefined;
  const path = options.budgets.overridesFile;
  if (path !== undefined) {
    try {
      overrides = watchOverrides({
        path,
        onReload(outcome, detail) {
          metrics.budgetOverrideReloads.labels(outcome).inc();
          if (outcome === 'ok') logger.info({ entries: detail.entries }, 'budgets.overridesFile reloaded');
          else logger.error({ error: detail.error }, 'budgets.overridesFile is invalid: the last good version stays in force until it is fixed');
        },
      });
    } catch (err) {
      // At start-up a bad file is a misconfiguration, named like any other.
      throw new Error(`budgets.overridesFile (BUDGET_OVERRIDES_FILE) ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
  }
  const budgets = createBudgets({
    limits: options.budgets,
    overrides: () => overrides?.current ?? EMPTY_OVERRIDES,
    counter,
    windows,
    now,
    onRefused: (window, kind) => metrics.budgetRefusals.labels(window, kind).inc(),
  });
  // Claims in flight, so that close() writes what they decide before the last write.
  const claims = new Set<Promise<void>>();
  const store = options.store;
  const followConfig = options.budgets.followUp;
  const retrieveChat = followConfig.enabled ? options.retrieveChat : undefined;
  let followUps: ChatFollowUps | undefined;
  const observers = createUsageObservers({
    onCount(route, sessionName, counts, id) {
      if (id?.startsWith(CHAT_ID)) followUps?.settle(id.slice(CHAT_ID.length));
      // Counted at once, so the budgets and GET /gateway/usage see it without waiting for Redis.
      counter.record(sessionName, counts);
      if (id === undefined || !store?.available) return metrics.countTokens(route, counts.input, counts.output);
      // A chat read through two replicas is the first claimant's: the others take their count
      // back. A claim Redis does not answer keeps it, as a replica alone would (once per replica).
      const countedOn = windows.at(now()).day.label;
      const claim = store.claimOnce(identityTag(sessionName), id).then(
        (first) => {
          if (first) metrics.countTokens(route, counts.input, counts.output);
          // Only in the day it was counted in: taken from the next one, it would lend that day tokens.
          else if (windows.at(now()).day.label === countedOn) counter.record(sessionName, { input: -counts.input, output: -counts.output, total: -counts.total });
        },
        () => {
          metrics.redisErrors.labels('usage').inc();
          metrics.countTokens(route, counts.input, counts.output);
        },
      );
      claims.add(claim);
      void claim.finally(() => claims.delete(claim));
    },
    ...(retrieveChat ? { onOpenChat: (chat: OpenChat) => followUps?.open(chat) } : {}),
  });
  if (retrieveChat) {
    followUps = createChatFollowUps({
      delayMs: followConfig.delayMs,
      maxAgeMs: followConfig.maxAgeMs,
      maxPending: followConfig.maxPending,
      retrieve: retrieveChat,
      count: (chat, data, abandoned) => observers.countChat(chat, data, abandoned),
      // Redis errors answer "not claimed": the retrieve is then made, and the claim decides.
      ...(store ? { countedElsewhere: (chat: OpenChat) => (store.available ? store.isClaimed(identityTag(chat.sessionName), `${CHAT_ID}${chat.chatId}`) : Promise.resolve(false)) } : {}),
      onOutcome: (outcome) => metrics.countFollowUp(outcome),
    });
  }

  return {
    budgets,
    counter,
    followUps,
    track: observers.watch,
    report: {
      windows,
      limitsOf: (identity) => budgets.limitsOf(identity),
      async read(sessionName) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<false>((resolve) => (timer = setTimeout(resolve, REPORT_SYNC_TIMEOUT_MS, false)));
        const shared = options.store ? await Promise.race([counter.sync(sessionName), timeout]) : false;
        clearTimeout(timer);
        return { view: counter.view(sessionName), shared };
      },
    },
    async close() {
      followUps?.close();
      overrides?.close();
      await Promise.all(claims);
      await counter.close();
    },
  };
}
