import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createFakeClock } from '../../helpers/clock.js';
import { createUsageCounter, identityTag, ZERO, type SharedUsageStore, type Totals, type WindowDelta, type WriteStamp } from '../../../src/usage/usage-counter.js';
import { createUsageWindows } from '../../../src/usage/usage-windows.js';

/** A store in memory that can be taken down, standing in for Redis (a seq applied once per writer, as its script does). */
function fakeStore() {
  const data = new Map<string, Totals>();
  const applied = new Map<string, number>();
  const claimed = new Set<string>();
  const store = {
    up: true,
    calls: 0,
    data,
    get available() {
      return store.up;
    },
    async add(tag: string, stamp: WriteStamp, windows: readonly WindowDelta[]): Promise<Totals[]> {
      store.calls += 1;
      if (!store.up) throw new Error('down');
      const fresh = stamp.seq > (applied.get(`${tag}:${stamp.writer}`) ?? 0);
      if (fresh) applied.set(`${tag}:${stamp.writer}`, stamp.seq);
      return windows.map((w) => {
        const key = `${tag}:${w.kind}:${w.label}`;
        const old = data.get(key) ?? ZERO;
        const next = fresh ? { requests: old.requests + w.delta.requests, input: old.input + w.delta.input, output: old.output + w.delta.output, total: old.total + w.delta.total } : old;
        data.set(key, next);
        return next;
      });
    },
    async claimOnce(tag: string, id: string): Promise<boolean> {
      if (!store.up) throw new Error('down');
      if (claimed.has(`${tag}:${id}`)) return false;
      claimed.add(`${tag}:${id}`);
      return true;
    },
    async isClaimed(tag: string, id: string): Promise<boolean> {
      if (!store.up) throw new Error('down');
      return claimed.has(`${tag}:${id}`);
    },
  };
  return store satisfies SharedUsageStore;
}

describe('usage counter', () => {
  const windows = createUsageWindows('UTC');

  it('counts locally without a store: requests and tokens per day and month', () => {
    const clock = createFakeClock(Date.UTC(2026, 4, 31, 23, 0));
    const counter = createUsageCounter({ windows, syncIntervalMs: 1000, now: clock.now });
    counter.record('jwt:a', { requests: 1 });
    counter.record('jwt:a', { input: 3, output: 4, total: 7 });
    assert.deepEqual({ ...counter.view('jwt:a').day, label: undefined, endsAtMs: undefined }, { requests: 1, input: 3, output: 4, total: 7, label: undefined, endsAtMs: undefined });
    clock.advance(3_600_000);
    const june = counter.view('jwt:a');
    assert.equal(june.day.label, '2026-06-01');
    assert.equal(june.day.total, 0, 'a new day starts at zero');
    assert.equal(june.month.total, 0, 'and so does a new month');
    assert.equal(counter.view('jwt:b').day.total, 0, 'identities are apart');
    assert.equal(counter.unsynced, 0);
  });

  it('writes counts to the shared store and reads the other replicas\' counts back', async () => {
    const clock = createFakeClock(Date.UTC(2026, 4, 10, 12, 0));
    const store = fakeStore();
    const one = createUsageCounter({ windows, store, syncIntervalMs: 1000, now: clock.now });
    const two = createUsageCounter({ windows, store, syncIntervalMs: 1000, now: clock.now });
    one.record('jwt:a', { total: 10, input: 4, output: 6 });
    two.record('jwt:a', { total: 5, input: 2, output: 3 });
    assert.equal(one.unsynced, 1);
    await one.flush();
    await two.flush();
    assert.equal(one.unsynced, 0);
    assert.equal(await one.sync('jwt:a'), true);
    assert.equal(one.view('jwt:a').day.total, 15);
    assert.equal(two.view('jwt:a').day.total, 15, "the store's answer to its own write carries the other's counts");
    assert.ok([...store.data.keys()].every((k) => k.startsWith(identityTag('jwt:a'))) && ![...store.data.keys()].some((k) => k.includes('jwt:a')), 'only the hash leaves the process');
    await one.close();
    await two.close();
  });

  it('flush-after-a-write-in-flight: counts recorded while a write was in flight are written by the next flush and sync, not left behind it', async () => {
    const clock = createFakeClock(Date.UTC(2026, 4, 10, 12, 0));
    const store = fakeStore();
    const held: Array<() => void> = [];
    const add = store.add.bind(store);
    // Every write waits until the test lets it go: the first is still in flight when more is counted.
    store.add = (tag, stamp, windows) => new Promise<void>((resolve) => held.push(resolve)).then(() => add(tag, stamp, windows));
    const counter = createUsageCounter({ windows, store, syncIntervalMs: 60_000, now: clock.now });
    const key = `${identityTag('jwt:a')}:day:${windows.at(clock.now()).day.label}`;
    counter.record('jwt:a', { requests: 1, total: 28 });
    const first = counter.sync('jwt:a');
    counter.record('jwt:a', { requests: 1, total: 28 });
    const flushed = counter.flush();
    const synced = counter.sync('jwt:a');
    while (store.data.get(key)?.total !== 56) {
      const release = held.shift();
      if (!release) break;
      release();
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all([first, flushed, synced]);
    assert.equal(store.data.get(key)?.total, 56, 'both chats reached the store');
    assert.equal(store.data.get(key)?.requests, 2);
    assert.equal(counter.view('jwt:a').day.total, 56);
    assert.equal(counter.unsynced, 0);
    await counter.close();
  });

  /** A store whose writes wait until the test lets each go (`release`), or fails the next one. */
  function heldStore() {
    const store = fakeStore();
    const held: Array<{ go: () => void; fail: (err: Error) => void }> = [];
    const add = store.add.bind(store);
    store.add = (tag, stamp, windows) => new Promise<void>((go, fail) => held.push({ go, fail })).then(() => add(tag, stamp, windows));
    const settle = () => new Promise((r) => setImmediate(r));
    /** Lets every write go, those that `work` starts on the way included, until it is done. */
    const drain = async (work: Promise<unknown>) => {
      let finished = false;
      void work.finally(() => (finished = true));
      while (!finished) {
        for (const write of held.splice(0)) write.go();
        await settle();
      }
      return work;
    };
    return { store, held, settle, drain };
  }

  it('flush-joins-the-follow-up-write: two callers that waited for the same write both wait for the write that follows it', async () => {
    const clock = createFakeClock(Date.UTC(2026, 4, 10, 12, 0));
    const { store, held, settle } = heldStore();
    const counter = createUsageCounter({ windows, store, syncIntervalMs: 60_000, now: clock.now });
    const key = `${identityTag('jwt:a')}:day:${windows.at(clock.now()).day.label}`;
    counter.record('jwt:a', { requests: 1, total: 28 });
    const first = counter.sync('jwt:a');
    counter.record('jwt:a', { requests: 1, total: 28 });
    const done = { synced: false, closed: false };
    const synced = counter.sync('jwt:a').then(() => (done.synced = true));
    const closed = counter.close().then(() => (done.closed = true));
    held.shift()?.go();
    await first;
    await settle();
    assert.equal(held.length, 1, 'the second chat is in a write of its own');
    assert.deepEqual(done, { synced: false, closed: false }, 'neither caller returns while the second chat is still on its way');
    held.shift()?.go();
    await Promise.all([synced, closed]);
    assert.equal(store.data.get(key)?.total, 56);
  });

  it('close-waits-for-a-write-in-flight: a write the timer began before shutdown is waited for, not cut by the disconnect that follows', async () => {
    const clock = createFakeClock(Date.UTC(2026, 4, 10, 12, 0));
    const { store, held, settle } = heldStore();
    const counter = createUsageCounter({ windows, store, syncIntervalMs: 60_000, now: clock.now });
    counter.record('jwt:a', { requests: 1, total: 28 });
    const first = counter.flush();
    let closed = false;
    const closing = counter.close().then(() => (closed = true));
    await settle();
    assert.equal(closed, false, 'close waits while the write is out');
    assert.equal(counter.unsynced, 1, 'a write on its way is not confirmed yet');
    held.shift()?.go();
    await Promise.all([first, closing]);
    assert.equal(held.length, 0, 'and sends nothing more');
    assert.equal([...store.data.values()][0]?.total, 28);
    assert.equal(counter.unsynced, 0);
  });

  it('retired-window-in-flight-counted-once: a day left while its write is in flight is written once, and once again only if that write failed', async () => {
    for (const outcome of ['lands', 'fails'] as const) {
      const clock = createFakeClock(Date.UTC(2026, 4, 10, 23, 59, 59, 900));
      const { store, held, drain } = heldStore();
      const counter = createUsageCounter({ windows, store, syncIntervalMs: 60_000, now: clock.now, onSyncError: () => {} });
      const day10 = `${identityTag('jwt:a')}:day:${windows.at(clock.now()).day.label}`;
      counter.record('jwt:a', { requests: 1, total: 28 });
      const first = counter.sync('jwt:a');
      clock.advance(200);
      // Midnight passed while the write was out: the next count retires day 10.
      counter.record('jwt:a', { requests: 1, total: 5 });
      const flushed = counter.flush();
      const landed = held.shift();
      if (outcome === 'lands') landed?.go();
      else landed?.fail(new Error('timeout'));
      await first;
      await drain(flushed);
      // What a failed write gave back is written by the next flush.
      await drain(counter.flush());
      assert.equal(store.data.get(day10)?.total, 28, `day 10 holds its one chat (the first write ${outcome})`);
      assert.equal(counter.unsynced, 0);
      await counter.close();
    }
  });

  it('answer-lost-write-sent-again-unchanged: a write applied whose answer was lost goes again as it was, and what was counted since in a write of its own', async () => {
    const clock = createFakeClock(Date.UTC(2026, 4, 10, 12, 0));
    const store = fakeStore();
    const sent: Array<{ stamp: WriteStamp; totals: number[] }> = [];
    const add = store.add.bind(store);
    let loseAnswer = true;
    store.add = async (tag, stamp, windows) => {
      sent.push({ stamp, totals: windows.map((w) => w.delta.total) });
      const totals = await add(tag, stamp, windows);
      if (!loseAnswer) return totals;
      loseAnswer = false;
      throw new Error('timeout');
    };
    const counter = createUsageCounter({ windows, store, syncIntervalMs: 60_000, now: clock.now, onSyncError: () => {} });
    counter.record('jwt:a', { requests: 1, total: 28 });
    assert.equal(await counter.sync('jwt:a'), false);
    counter.record('jwt:a', { requests: 1, total: 5 });
    assert.equal(counter.view('jwt:a').day.total, 33, 'the lost answer\'s counts stay in the view meanwhile');
    assert.equal(counter.unsynced, 1);
    assert.equal(await counter.sync('jwt:a'), true);
    assert.deepEqual(
      sent.map((s) => [s.stamp.seq, s.totals]),
      [
        [1, [28, 28]],
        [1, [28, 28]],
        [2, [5, 5]],
      ],
      'sent again with its seq and deltas, the new counts after it',
    );
    assert.equal(new Set(sent.map((s) => s.stamp.writer)).size, 1);
    assert.deepEqual([...store.data.values()].map((t) => t.total), [33, 33], 'day and month got every count once');
    assert.equal(counter.view('jwt:a').day.total, 33);
    assert.equal(counter.unsynced, 0);
    await counter.close();
  });

  it('keeps the counts while the store is down and writes them once it is back; a failed write loses nothing', async () => {
    const clock = createFakeClock(Date.UTC(2026, 4, 10, 12, 0));
    const store = fakeStore();
    const errors: unknown[] = [];
    const counter = createUsageCounter({ windows, store, syncIntervalMs: 1000, now: clock.now, onSyncError: (e) => errors.push(e) });
    counter.record('jwt:a', { total: 10 });
    store.up = false;
    await counter.flush();
    assert.equal(store.calls, 0, 'no call while the store is known to be down');
    counter.record('jwt:a', { total: 5 });
    assert.equal(counter.view('jwt:a').day.total, 15, 'the local view counts on');
    assert.equal(counter.unsynced, 1);

    // The store answers as available but the write fails: the counts go back to pending.
    store.up = true;
    const failing = store.add;
    store.add = async () => {
      store.calls += 1;
      throw new Error('timeout');
    };
    await counter.flush();
    assert.equal(errors.length, 1);
    assert.equal(counter.view('jwt:a').day.total, 15);
    assert.equal(counter.unsynced, 1);
    store.add = failing;
    await counter.flush();
    assert.equal(counter.unsynced, 0);
    assert.deepEqual([...store.data.values()].map((t) => t.total), [15, 15], 'day and month got every count once');
    await counter.close();
  });

  it('writes a window the identity has left (a new day) to its own key', async () => {
    const clock = createFakeClock(Date.UTC(2026, 4, 10, 23, 59));
    const store = fakeStore();
    const counter = createUsageCounter({ windows, store, syncIntervalMs: 1000, now: clock.now });
    counter.record('jwt:a', { total: 7 });
    clock.advance(120_000);
    counter.record('jwt:a', { total: 2 });
    await counter.flush();
    const tag = identityTag('jwt:a');
    assert.equal(store.data.get(`${tag}:day:2026-05-10`)?.total, 7);
    assert.equal(store.data.get(`${tag}:day:2026-05-11`)?.total, 2);
    assert.equal(store.data.get(`${tag}:month:2026-05`)?.total, 9);
    await counter.close();
  });
});
