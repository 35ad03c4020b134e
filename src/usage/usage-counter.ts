import { randomBytes } from 'node:crypto';
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
 * Which write of one identity this is. A write whose answer is lost (a timeout) may have been
 * applied, so it is sent again with the same stamp and deltas; the store applies a write only
 * when its seq is above the last one it applied from that writer for that identity.
 */
export interface WriteStamp {
  /** Random, one per counter (per replica). */
  writer: string;
  seq: number;
}

/**
 * The level shared by every replica (Redis: usage-store-redis.ts). `add` adds the deltas of
 * one identity's windows atomically, unless it applied that writer's write `seq` (or a later
 * one) already, and answers each window's totals after it; a zero delta only reads them.
 */
export interface SharedUsageStore {
  add(identityTag: string, stamp: WriteStamp, windows: readonly WindowDelta[]): Promise<Totals[]>;
  /**
   * True for the first replica to claim `id` (a chat or an async run whose usage was read) for
   * this identity within a day: the others saw it counted already.
   */
  claimOnce(identityTag: string, id: string): Promise<boolean>;
  /** Whether some replica has claimed `id` (a chat followed up need not be retrieved then). */
  isClaimed(identityTag: string, id: string): Promise<boolean>;
  /** False while the store cannot be reached: counts stay local, without a failing call each time. */
  readonly available: boolean;
}

interface WindowState extends WindowSpan {
  /** The store's totals as last read (all replicas), this replica's flushed counts included. */
  shared: Totals;
  /** Counts on their way to the store (in the entry's `out` write). */
  inflight: Totals;
  /** Counts no write carries yet. */
  pending: Totals;
}

/** One write of an identity's counts, kept as it was made until the store has answered it. */
interface Write {
  seq: number;
  /** The day and the month it was made in (USAGE_WINDOWS order), then windows left before. */
  windows: WindowDelta[];
  /** The states the first windows were taken from: the answer is their shared totals. */
  states: Record<UsageWindow, WindowState>;
}

interface Entry {
  /** The identity's hash: the only form of it that leaves the process. */
  tag: string;
  day: WindowState;
  month: WindowState;
  /** Counts of windows the identity has left (a new day), for its next write. */
  left: WindowDelta[];
  /**
   * The write in flight, or the last one whose answer never came. The store may have applied
   * it, so it goes again unchanged until answered, before anything newer: merging newer counts
   * into it would count its own twice, and a newer seq applied first would make it lost.
   */
  out: Write | undefined;
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
  /** Identities with counts the store has not confirmed yet. */
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
 * Usage per identity and window, decided locally and shared in batches (issue 18). The
 * identity key is opaque here: the gateway passes the caller's session_name (admit.ts). Each
 * replica keeps, per identity, the shared totals it last read plus what it counted since; the
 * budget check reads that sum synchronously, never Redis. A timer writes the unsynced counts
 * of every identity that has some, one atomic call per identity (the answer is the new shared
 * totals); a view older than the sync interval is refreshed in the background on its next read.
 * When the store is down, counts wait in `pending` and reach it once it is back; only a replica
 * that exits before then loses them. Each identity's writes go one at a time, in seq order, and
 * a write is sent again as it was until answered: at least once, applied once (WriteStamp).
 */
export function createUsageCounter(options: UsageCounterOptions): UsageCounter {
  const now = options.now ?? Date.now;
  const store = options.store;
  const writer = randomBytes(8).toString('hex');
  // Counter-wide, so an identity forgotten and seen again goes on above every seq it was sent with.
  let lastSeq = 0;
  // Identities the LRU dropped with counts still to write. An identity seen again takes its entry
  // back, so its writes stay one at a time and in order.
  const parked = new Map<string, Entry>();
  const maxParked = options.maxIdentities ?? 100_000;
  const entries = new LRUCache<string, Entry>({
    max: options.maxIdentities ?? 100_000,
    dispose: (entry, key, reason) => {
      if (reason !== 'evict' || !store || !(writing(entry) || unsent(entry))) return;
      parked.set(key, entry);
      // Bounded as the LRU is: past that, the oldest are let go with their counts (Redis away long).
      if (parked.size <= maxParked) return;
      const [oldest] = parked.keys();
      if (oldest === undefined) return;
      parked.delete(oldest);
      dirty.delete(oldest);
    },
  });
  // Identities with counts the store has not confirmed: pending, left or out.
  const dirty = new Set<string>();
  let refreshQueued = false;
  const toRefresh = new Set<string>();

  // Functions, so that the compiler does not keep a check made before an await.
  const writing = (entry: Entry) => entry.syncing !== undefined;
  const unsent = (entry: Entry) => entry.out !== undefined || entry.left.length > 0 || !isZero(entry.day.pending) || !isZero(entry.month.pending);
  const fresh = (span: WindowSpan): WindowState => ({ label: span.label, endsAtMs: span.endsAtMs, shared: ZERO, inflight: ZERO, pending: ZERO });

  function entryOf(identityKey: string, t: number): Entry {
    let entry = entries.get(identityKey) ?? parked.get(identityKey);
    const spans = options.windows.at(t);
    if (!entry) {
      entry = { tag: identityTag(identityKey), day: fresh(spans.day), month: fresh(spans.month), left: [], out: undefined, syncedAtMs: 0, syncing: undefined };
      entries.set(identityKey, entry);
      return entry;
    }
    if (parked.delete(identityKey)) entries.set(identityKey, entry);
    for (const kind of USAGE_WINDOWS) {
      const state = entry[kind];
      if (state.label === spans[kind].label) continue;
      // Only what is pending: counts in flight are their write's own, which is sent again as it was if it fails.
      if (store && !isZero(state.pending)) entry.left.push({ kind, label: state.label, endsAtMs: state.endsAtMs, delta: state.pending });
      entry[kind] = fresh(spans[kind]);
      // The new window's shared totals are unknown until read.
      entry.syncedAtMs = 0;
    }
    return entry;
  }

  function nextWrite(entry: Entry): Write {
    const windows = USAGE_WINDOWS.map((kind): WindowDelta => {
      const state = entry[kind];
      state.inflight = state.pending;
      state.pending = ZERO;
      return { kind, label: state.label, endsAtMs: state.endsAtMs, delta: state.inflight };
    });
    windows.push(...entry.left.splice(0));
    return { seq: ++lastSeq, windows, states: { day: entry.day, month: entry.month } };
  }

  /** An entry whose every count the store has confirmed is clean; a parked one is let go. */
  function settle(identityKey: string, entry: Entry): void {
    if (unsent(entry)) return;
    if (parked.get(identityKey) === entry) parked.delete(identityKey);
    // Dropped for good (more parked than allowed): the key may be a newer entry's now.
    else if (entries.peek(identityKey) !== entry) return;
    dirty.delete(identityKey);
  }

  /**
   * Writes the entry's counts and reads the shared totals. `complete`: every count recorded before
   * the call is written when it resolves (flush, sync); a write already in flight, or one sent
   * again, carries only the counts taken when it was made, so the rest follows it. A background
   * refresh just joins it.
   */
  async function syncEntry(identityKey: string, entry: Entry, complete: boolean): Promise<boolean> {
    if (!store?.available) return false;
    if (entry.syncing) {
      const written = await entry.syncing;
      if (!complete) return written;
      // What was recorded meanwhile (or a write that failed) follows in one more write, which
      // another caller that waited for the same one may have begun already: joined, or begun here.
      return writing(entry) || unsent(entry) ? syncEntry(identityKey, entry, true) : written;
    }
    const again = entry.out !== undefined;
    const write = (entry.out ??= nextWrite(entry));
    const { states } = write;
    const started = now();
    entry.syncing = store.add(entry.tag, { writer, seq: write.seq }, write.windows).then(
      (totals) => {
        USAGE_WINDOWS.forEach((kind, i) => {
          states[kind].shared = totals[i] ?? states[kind].shared;
          states[kind].inflight = ZERO;
        });
        entry.out = undefined;
        if (entry.day === states.day && entry.month === states.month) entry.syncedAtMs = started;
        settle(identityKey, entry);
        return true;
      },
      (err: unknown) => {
        // A read has nothing to send again; a write stays `out`, in the windows it was made in.
        if (write.windows.every((w) => isZero(w.delta))) entry.out = undefined;
        settle(identityKey, entry);
        options.onSyncError?.(err);
        return false;
      },
    );
    let written: boolean;
    try {
      written = await entry.syncing;
    } finally {
      entry.syncing = undefined;
    }
    return again && complete && written && unsent(entry) ? syncEntry(identityKey, entry, true) : written;
  }

  async function flush(): Promise<void> {
    if (!store?.available) return;
    const keys = [...dirty];
    await Promise.all(
      keys.map((key) => {
        const entry = entries.peek(key) ?? parked.get(key);
        return entry ? syncEntry(key, entry, true) : (dirty.delete(key), false);
      }),
    );
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
      return store ? dirty.size : 0;
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
