import type { OpenChat } from './usage-observer.js';

/**
 * Chats nobody follows to their end, followed up by the gateway (docs/usage-and-budgets.md): a
 * non-streaming chat its client never retrieves once ended, a chat stream dropped before
 * `conversation.chat.completed`. Their usage would otherwise never pass the gateway, and a
 * token budget would be a matter of not looking. Each is retrieved from Coze after `delayMs`,
 * unless its usage was counted by then, and counted like a client's retrieve of it.
 *
 * Entries live in one Map in the order they were opened (the oldest is the one dropped at the
 * cap) under one timer armed for the earliest due; opening is O(1) on the request path, and the
 * timer's scan of at most `maxPending` entries runs in the background.
 */

/** Closed vocabulary: the `outcome` label of coze_gateway_usage_follow_ups_total. */
export const FOLLOW_UP_OUTCOMES = ['counted', 'abandoned', 'followed', 'claimed', 'retried', 'expired', 'failed', 'evicted'] as const;
export type FollowUpOutcome = (typeof FOLLOW_UP_OUTCOMES)[number];

/** What one retrieve of a chat at Coze gave. */
export type RetrieveResult =
  /** Coze's Chat object (`data`). */
  | { kind: 'chat'; data: unknown }
  /** Not now (no token, Coze unreachable or failing, the token refused): tried again later. */
  | { kind: 'retry' }
  /** Coze refused it for good (not found, not this session's): dropped. */
  | { kind: 'gone' };

export interface ChatFollowUpOptions {
  delayMs: number;
  maxAgeMs: number;
  maxPending: number;
  /** Retrieves at once at most (default 4): a backlog is worked through, never fired at Coze in one go. */
  concurrency?: number;
  retrieve(chat: OpenChat): Promise<RetrieveResult>;
  /** Counts a retrieved chat as a client's retrieve would (UsageObservers.countChat); false: not counted now. */
  count(chat: OpenChat, data: unknown, abandoned: boolean): boolean;
  /** With Redis: another replica counted this chat already, so no retrieve is needed. */
  countedElsewhere?(chat: OpenChat): Promise<boolean>;
  onOutcome(outcome: FollowUpOutcome): void;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (timer: unknown) => void;
}

export interface ChatFollowUps {
  /** A chat seen running: followed up `delayMs` from now (a client still polling it puts it off). */
  open(chat: OpenChat): void;
  /** The chat's usage was counted (`chat:<id>` by the observer): nothing to follow up. */
  settle(chatId: string): void;
  readonly pending: number;
  /** Stops the timer; pending follow-ups are dropped (docs/usage-and-budgets.md). */
  close(): void;
}

interface Entry {
  chat: OpenChat;
  /** When it was first seen; past openedAt + maxAgeMs it is given up. */
  openedAt: number;
  dueAt: number;
  attempts: number;
  running: boolean;
  /** Counted by someone else while its retrieve was running. */
  settled: boolean;
}

const DEFAULT_CONCURRENCY = 4;
/** Retries back off from delayMs, doubling, up to this. */
const MAX_BACKOFF_MS = 5 * 60_000;
/** Entries falling due close together are taken by one timer run. */
const MAX_TICK_MS = 250;
const STATUS = (data: unknown) => (typeof data === 'object' && data !== null ? (data as { status?: unknown }).status : undefined);

export function createChatFollowUps(options: ChatFollowUpOptions): ChatFollowUps {
  const now = options.now ?? Date.now;
  const setTimer = options.setTimer ?? ((fn: () => void, ms: number) => setTimeout(fn, ms).unref());
  const clearTimer = options.clearTimer ?? ((t: unknown) => clearTimeout(t as NodeJS.Timeout));
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  const tickMs = Math.min(MAX_TICK_MS, options.delayMs);
  const entries = new Map<string, Entry>();
  let running = 0;
  let timer: unknown;
  let timerAt = Infinity;
  let closed = false;

  const deadline = (e: Entry) => e.openedAt + options.maxAgeMs;

  function armAt(at: number): void {
    if (closed || at >= timerAt) return;
    if (timer !== undefined) clearTimer(timer);
    timerAt = at;
    timer = setTimer(tick, Math.max(0, at - now()));
  }

  function tick(): void {
    timer = undefined;
    timerAt = Infinity;
    pump();
  }

  /** Starts what is due, as far as the concurrency allows, and arms the timer for the rest. */
  function pump(): void {
    if (closed) return;
    const t = now();
    let next = Infinity;
    for (const e of entries.values()) {
      if (e.running) continue;
      if (e.dueAt <= t && running < concurrency) void run(e);
      else if (e.dueAt < next) next = e.dueAt;
    }
    if (next !== Infinity) armAt(Math.max(next, t + tickMs));
  }

  function finish(e: Entry, outcome: FollowUpOutcome): void {
    entries.delete(e.chat.chatId);
    options.onOutcome(outcome);
  }

  async function run(e: Entry): Promise<void> {
    e.running = true;
    running += 1;
    const outcome = await attempt(e);
    e.running = false;
    running -= 1;
    if (closed) return;
    if (outcome !== 'retry') finish(e, outcome);
    else if (now() >= deadline(e)) finish(e, 'expired');
    else {
      e.attempts += 1;
      e.dueAt = Math.min(now() + Math.min(options.delayMs * 2 ** e.attempts, MAX_BACKOFF_MS), deadline(e));
      options.onOutcome('retried');
    }
    pump();
  }

  /** One follow-up of a chat: how it ended, or 'retry'. */
  async function attempt(e: Entry): Promise<FollowUpOutcome | 'retry'> {
    if (options.countedElsewhere && (await options.countedElsewhere(e.chat).catch(() => false))) return 'claimed';
    if (e.settled) return 'followed';
    const result = await options.retrieve(e.chat).catch((): RetrieveResult => ({ kind: 'retry' }));
    if (e.settled || closed) return 'followed';
    if (result.kind !== 'chat') return result.kind === 'gone' ? 'failed' : 'retry';
    // The count settles this id while the entry runs: the outcome is decided here.
    if (options.count(e.chat, result.data, false)) return 'counted';
    const status = STATUS(result.data);
    // Ended, but this replica counted it meanwhile (a client's retrieve raced this one).
    if (status === 'completed' || status === 'failed' || status === 'canceled') return 'followed';
    // Still waiting for tool outputs at the end of its time: abandoned; what it spent so far is
    // counted, and its end, should it come through the gateway after all, counts the rest.
    if (status === 'requires_action' && now() >= deadline(e) && options.count(e.chat, result.data, true)) return 'abandoned';
    return 'retry';
  }

  return {
    open(chat) {
      if (closed) return;
      const t = now();
      const known = entries.get(chat.chatId);
      if (known) {
        // The client is still following it: put the follow-up off (never past its end).
        if (!known.running) known.dueAt = Math.min(Math.max(known.dueAt, t + options.delayMs), deadline(known));
        return;
      }
      if (entries.size >= options.maxPending) {
        for (const e of entries.values()) {
          if (e.running) continue;
          finish(e, 'evicted');
          break;
        }
      }
      const e: Entry = { chat, openedAt: t, dueAt: t + options.delayMs, attempts: 0, running: false, settled: false };
      entries.set(chat.chatId, e);
      armAt(e.dueAt);
    },
    settle(chatId) {
      const e = entries.get(chatId);
      if (!e) return;
      if (e.running) e.settled = true;
      else finish(e, 'followed');
    },
    get pending() {
      return entries.size;
    },
    close() {
      closed = true;
      if (timer !== undefined) clearTimer(timer);
      timer = undefined;
      entries.clear();
    },
  };
}
