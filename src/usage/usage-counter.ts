import { keyHash } from '../cache/redis-client.js';
import { LRUCache } from 'lru-cache';
import { USAGE_WINDOWS, type UsageWindow, type UsageWindows, type WindowSpan } from './usage-windows.js';

/** What is counted per identity and window. `total` is Coze's token_count (input + output). */
export interface Totals {
  requests: number;
  input: number;
  output: number;
  total: number;
}

export const ZERO: Readonly<Totals> = Object.freeze({ requests: 0, input: 0, output: 0, total: 0 });

/** One window's counts as one replica sees them. */
export interface WindowView extends Totals {
  label: string;
  endsAtMs: number;
}

export type UsageView = Record<UsageWindow, WindowView>;

/** One window of one identity, as written to the shared store. */
export interface WindowDelta {
  kind: UsageWindow;
  label: string;
  /** Unix ms: the store keeps the window's counts a margin past it. */
  endsAtMs: number;
  delta: Totals;
}

/**
 * The level shared by every replica (Redis: usage-store-redis.ts). `add` adds the deltas of
 * one identity's windows atomically and answers each window's totals after the addition; a
 * zero delta only reads them.
 */
export interface SharedUsageStore {
  add(identityTag: string, windows: readonly WindowDelta[]): Promise<Totals[]>;
  /** False while the store cannot be reached: counts stay local, without a failing call each time. */
  readonly available: boolean;
}

interface WindowState extends WindowSpan {
  /** The store's totals as last read (all replicas), this replica's flushed counts included. */
  shared: Totals;
  /** Counts on their way to the store. */
  inflight: Totals;
  /** Counts the store has not seen yet. */
  pending: Totals;
}

interface Entry {
  /** The identity's hash: the only form of it that leaves the process. */
  tag: string;
  day: WindowState;
  month: WindowState;
  /** When the shared totals were last read (0: never). */
  syncedAtMs: number;
  syncing: Promise<boolean> | undefined;
}

export interface UsageCounterOptions {
  windows: UsageWindows;
  store?: SharedUsageStore | undefined;
  /** A view older than this is refreshed (without waiting for it); dirty counts are written this often. */
  syncIntervalMs: number;
  now?: () => number;
  maxIdentities?: number;
  onSyncError?: (err: unknown) => void;
}

export interface UsageCounter {
  /** Adds to the identity's current day and month. Never waits. */
  record(identityKey: string, delta: Partial<Totals>): void;
  /** The identity's counts as this replica knows them now; asks for a refresh when they are stale. Never waits. */
  view(identityKey: string): UsageView;
  /** Writes this identity's counts to the store and reads the shared totals: false when the store failed. */
  sync(identityKey: string): Promise<boolean>;
  /** Writes every unsynced count (a timer does this every syncIntervalMs; close() once more). */
  flush(): Promise<void>;
  /** Identities (and past windows) with counts the store has not seen yet. */
  readonly unsynced: number;
  close(timeoutMs?: number): Promise<void>;
}

const add = (a: Totals, b: Partial<Totals>): Totals => ({
  requests: a.requests + (b.requests ?? 0),
  input: a.input + (b.input ?? 0),
  output: a.output + (b.output ?? 0),
  total: a.total + (b.total ?? 0),
});
const isZero = (t: Totals) => t.requests === 0 && t.input === 0 && t.output === 0 && t.total === 0;

/** The hash an identity is known by in the shared store: no user id in clear in the key space. */
export const identityTag = keyHash;

/**
 * Usage per identity and window, decided locally and shared in batches (issue 18). Each
 * replica keeps, per identity, the shared totals it last read plus what it counted since; the
 * budget check reads that sum synchronously, never Redis. A timer writes the unsynced counts
 * of every identity that has some, one atomic call per identity (the answer is the new shared
 * totals); a view older than the sync interval is refreshed in the background on its next read.
 * When the store is down, counts wait in `pending` and reach it once it is back; only a replica
 * that exits before then loses them.
 */
export function createUsageCounter(options: UsageCounterOptions): UsageCounter {
  const now = options.now ?? Date.now;
  const store = options.store;
  // Counts of windows an identity left (a new day) or of entries dropped by the LRU, still to write.
  const retiring: Array<{ tag: string; window: WindowDelta }> = [];
  const maxRetiring = options.maxIdentities ?? 100_000;
  const retireCounts = (tag: string, kind: UsageWindow, state: WindowState, delta: Totals) => {
    if (!store || isZero(delta)) return;
    retiring.push({ tag, window: { kind, label: state.label, endsAtMs: state.endsAtMs, delta } });
    if (retiring.length > maxRetiring) retiring.shift();
  };
  // Only what is pending: counts in flight are their write's own, and come back here if it fails.
  const retire = (tag: string, kind: UsageWindow, state: WindowState) => {
    retireCounts(tag, kind, state, state.pending);
    state.pending = ZERO;
  };
  const entries = new LRUCache<string, Entry>({
    max: options.maxIdentities ?? 100_000,
    dispose: (entry, _key, reason) => {
      if (reason !== 'evict') return;
      for (const kind of USAGE_WINDOWS) retire(entry.tag, kind, entry[kind]);
    },
  });
  const dirty = new Set<string>();
  let refreshQueued = false;
  const toRefresh = new Set<string>();

  // A function, so that the compiler does not keep a check made before an await.
  const writing = (entry: Entry) => entry.syncing !== undefined;
  const fresh = (span: WindowSpan): WindowState => ({ label: span.label, endsAtMs: span.endsAtMs, shared: ZERO, inflight: ZERO, pending: ZERO });

  function entryOf(identityKey: string, t: number): Entry {
    let entry = entries.get(identityKey);
    const spans = options.windows.at(t);
    if (!entry) {
      entry = { tag: identityTag(identityKey), day: fresh(spans.day), month: fresh(spans.month), syncedAtMs: 0, syncing: undefined };
      entries.set(identityKey, entry);
      return entry;
    }
    for (const kind of USAGE_WINDOWS) {
      if (entry[kind].label === spans[kind].label) continue;
      retire(entry.tag, kind, entry[kind]);
      entry[kind] = fresh(spans[kind]);
      // The new window's shared totals are unknown until read.
      entry.syncedAtMs = 0;
    }
    return entry;
  }

  function deltas(entry: Entry): WindowDelta[] {
    return USAGE_WINDOWS.map((kind) => {
      const state = entry[kind];
      state.inflight = state.pending;
      state.pending = ZERO;
      return { kind, label: state.label, endsAtMs: state.endsAtMs, delta: state.inflight };
    });
  }

  /**
   * Writes the entry's counts and reads the shared totals. `complete`: every count recorded before
   * the call is written when it resolves (flush, sync); a write already in flight carries only the
   * counts taken when it began, so the rest follows it. A background refresh just joins it.
   */
  async function syncEntry(identityKey: string, entry: Entry, complete: boolean): Promise<boolean> {
    if (!store?.available) return false;
    if (entry.syncing) {
      const written = await entry.syncing;
      if (!complete) return written;
      // What was recorded meanwhile follows in one more write, which another caller that waited
      // for the same one may have begun already: joined, or begun here.
      return writing(entry) || !isZero(entry.day.pending) || !isZero(entry.month.pending) ? syncEntry(identityKey, entry, true) : written;
    }
    const states = { day: entry.day, month: entry.month };
    dirty.delete(identityKey);
    const windows = deltas(entry);
    const started = now();
    entry.syncing = store.add(entry.tag, windows).then(
      (totals) => {
        USAGE_WINDOWS.forEach((kind, i) => {
          states[kind].shared = totals[i] ?? states[kind].shared;
          states[kind].inflight = ZERO;
        });
        if (entry.day === states.day && entry.month === states.month) entry.syncedAtMs = started;
        return true;
      },
      (err: unknown) => {
        const evicted = entries.peek(identityKey) !== entry;
        for (const kind of USAGE_WINDOWS) {
          const state = states[kind];
          // A window left, or an entry dropped, while this write was out: its counts retire.
          if (evicted || entry[kind] !== state) retireCounts(entry.tag, kind, state, state.inflight);
          else state.pending = add(state.pending, state.inflight);
          state.inflight = ZERO;
        }
        if (!isZero(entry.day.pending) || !isZero(entry.month.pending)) dirty.add(identityKey);
        options.onSyncError?.(err);
        return false;
      },
    );
    try {
      return await entry.syncing;
    } finally {
      entry.syncing = undefined;
    }
  }

  async function flushRetiring(): Promise<void> {
    if (!store?.available) return;
    const batch = retiring.splice(0);
    await Promise.all(
      batch.map(async (item) => {
        try {
          await store.add(item.tag, [item.window]);
        } catch (err) {
          retiring.push(item);
          options.onSyncError?.(err);
        }
      }),
    );
  }

  async function flush(): Promise<void> {
    if (!store?.available) return;
    const keys = [...dirty];
    await Promise.all([
      ...keys.map((key) => {
        const entry = entries.peek(key);
        return entry ? syncEntry(key, entry, true) : (dirty.delete(key), false);
      }),
      flushRetiring(),
    ]);
  }

  /** Stale views read this turn are refreshed together, once the turn's requests are decided. */
  function queueRefresh(identityKey: string): void {
    toRefresh.add(identityKey);
    if (refreshQueued) return;
    refreshQueued = true;
    setImmediate(() => {
      refreshQueued = false;
      const keys = [...toRefresh];
      toRefresh.clear();
      for (const key of keys) {
        const entry = entries.peek(key);
        if (entry) void syncEntry(key, entry, false);
      }
    });
  }

  const timer = store ? setInterval(() => void flush(), options.syncIntervalMs) : undefined;
  timer?.unref();

  const viewOf = (state: WindowState): WindowView => ({ label: state.label, endsAtMs: state.endsAtMs, ...add(add(state.shared, state.inflight), state.pending) });

  return {
    record(identityKey, delta) {
      const entry = entryOf(identityKey, now());
      entry.day.pending = add(entry.day.pending, delta);
      entry.month.pending = add(entry.month.pending, delta);
      if (store) dirty.add(identityKey);
    },
    view(identityKey) {
      const t = now();
      const entry = entryOf(identityKey, t);
      if (store && !entry.syncing && t - entry.syncedAtMs >= options.syncIntervalMs && store.available) queueRefresh(identityKey);
      return { day: viewOf(entry.day), month: viewOf(entry.month) };
    },
    sync(identityKey) {
      return syncEntry(identityKey, entryOf(identityKey, now()), true);
    },
    flush,
    get unsynced() {
      return store ? dirty.size + retiring.length : 0;
    },
    async close(timeoutMs = 1000) {
      if (timer) clearInterval(timer);
      if (!store) return;
      let timeout: NodeJS.Timeout | undefined;
      await Promise.race([flush(), new Promise<void>((resolve) => (timeout = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timeout);
    },
  };
}
