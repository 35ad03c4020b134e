import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createChatFollowUps, type ChatFollowUpOptions, type FollowUpOutcome, type RetrieveResult } from '../../../src/usage/chat-follow-up.js';
import type { OpenChat } from '../../../src/usage/usage-observer.js';
import { createFakeClock } from '../../helpers/clock.js';

const chat = (id: string): OpenChat => ({ route: 'chat', sessionName: 's', tokenKey: 's', chatId: id, conversationId: `conv-${id}` });
const flush = () => new Promise((r) => setImmediate(r));

/** Follow-ups on a fake clock and scheduler; `answer` says what Coze answers each retrieve. */
function setup(overrides: Partial<ChatFollowUpOptions> & { answer?: (chat: OpenChat) => RetrieveResult | Promise<RetrieveResult> } = {}) {
  const clock = createFakeClock(0);
  const timers = new Set<{ fn: () => void; at: number }>();
  const outcomes: FollowUpOutcome[] = [];
  const retrieves: Array<{ id: string; at: number }> = [];
  const counted: Array<{ id: string; abandoned: boolean }> = [];
  const followUps = createChatFollowUps({
    delayMs: 1000,
    maxAgeMs: 60_000,
    maxPending: 100,
    retrieve: async (c) => {
      retrieves.push({ id: c.chatId, at: clock.now() });
      return (overrides.answer ?? (() => ({ kind: 'chat', data: { id: c.chatId, status: 'completed' } })))(c);
    },
    count: (c, data, abandoned) => {
      const status = (data as { status: string }).status;
      if (!abandoned && status !== 'completed') return false;
      counted.push({ id: c.chatId, abandoned });
      return true;
    },
    onOutcome: (o) => outcomes.push(o),
    now: clock.now,
    setTimer: (fn, ms) => {
      const t = { fn, at: clock.now() + ms };
      timers.add(t);
      return t;
    },
    clearTimer: (t) => timers.delete(t as { fn: () => void; at: number }),
    ...overrides,
  });
  /** Moves the clock to `ms`, running each timer as its time comes, and lets the retrieves settle. */
  async function advanceTo(ms: number) {
    for (;;) {
      const due = [...timers].filter((t) => t.at <= ms).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      timers.delete(due);
      clock.set(Math.max(clock.now(), due.at));
      due.fn();
      await flush();
    }
    clock.set(ms);
    await flush();
  }
  return { followUps, clock, timers, outcomes, retrieves, counted, advanceTo };
}

describe('chat follow-ups', () => {
  it('retrieves a chat after the delay and counts it once it has ended', async () => {
    const t = setup();
    t.followUps.open(chat('a'));
    await t.advanceTo(999);
    assert.equal(t.retrieves.length, 0, 'nothing before the delay');
    await t.advanceTo(1000);
    assert.deepEqual(t.retrieves, [{ id: 'a', at: 1000 }]);
    assert.deepEqual(t.counted, [{ id: 'a', abandoned: false }]);
    assert.deepEqual(t.outcomes, ['counted']);
    assert.equal(t.followUps.pending, 0);
    assert.equal(t.timers.size, 0, 'no timer left once nothing is pending');
  });

  it('a chat counted otherwise is dropped without a retrieve, and one the client keeps polling is put off', async () => {
    const t = setup();
    t.followUps.open(chat('a'));
    t.followUps.open(chat('b'));
    t.followUps.settle('a');
    await t.advanceTo(600);
    t.followUps.open(chat('b'));
    await t.advanceTo(1599);
    assert.equal(t.retrieves.length, 0, 'b was put off to 600 + 1000');
    await t.advanceTo(1600);
    assert.deepEqual(t.retrieves.map((r) => r.id), ['b']);
    assert.deepEqual(t.outcomes, ['followed', 'counted']);
  });

  it('backs off while the chat runs and gives it up at max age; one waiting for tool outputs is counted as abandoned', async () => {
    const running = setup({ answer: (c) => ({ kind: 'chat', data: { id: c.chatId, status: 'in_progress' } }), maxAgeMs: 10_000 });
    running.followUps.open(chat('slow'));
    await running.advanceTo(20_000);
    assert.deepEqual(running.retrieves.map((r) => r.at), [1000, 3000, 7000, 10_000], 'delay, then doubling, the last one at max age');
    assert.deepEqual(running.outcomes, ['retried', 'retried', 'retried', 'expired']);
    assert.deepEqual(running.counted, []);

    const waiting = setup({ answer: (c) => ({ kind: 'chat', data: { id: c.chatId, status: 'requires_action' } }), maxAgeMs: 3000 });
    waiting.followUps.open(chat('tool'));
    await waiting.advanceTo(5000);
    assert.deepEqual(waiting.outcomes, ['retried', 'abandoned']);
    assert.deepEqual(waiting.counted, [{ id: 'tool', abandoned: true }]);
  });

  it('tries again after a failed retrieve (no token, Coze down) and drops a chat Coze says is gone', async () => {
    let calls = 0;
    const t = setup({ answer: (c) => (c.chatId === 'gone' ? { kind: 'gone' } : ++calls === 1 ? Promise.reject(new Error('mint held')) : { kind: 'chat', data: { status: 'completed' } }) });
    t.followUps.open(chat('flaky'));
    t.followUps.open(chat('gone'));
    await t.advanceTo(1000);
    await t.advanceTo(3000);
    assert.deepEqual(t.outcomes.sort(), ['counted', 'failed', 'retried']);
  });

  it('keeps at most maxPending chats, dropping the oldest', async () => {
    const t = setup({ maxPending: 2 });
    for (const id of ['1', '2', '3']) t.followUps.open(chat(id));
    assert.equal(t.followUps.pending, 2);
    assert.deepEqual(t.outcomes, ['evicted']);
    await t.advanceTo(1000);
    assert.deepEqual(t.retrieves.map((r) => r.id), ['2', '3']);
  });

  it('retrieves at most `concurrency` chats at once and works through the backlog as they finish', async () => {
    const gates: Array<() => void> = [];
    const t = setup({ concurrency: 2, answer: () => new Promise((resolve) => gates.push(() => resolve({ kind: 'chat', data: { status: 'completed' } }))) });
    for (const id of ['1', '2', '3', '4']) t.followUps.open(chat(id));
    await t.advanceTo(1000);
    assert.equal(t.retrieves.length, 2, 'two at once');
    gates.shift()?.();
    await flush();
    assert.equal(t.retrieves.length, 3, 'the next starts as one finishes');
    for (const open of gates.splice(0)) open();
    await flush();
    for (const open of gates.splice(0)) open();
    await flush();
    assert.deepEqual(t.outcomes, ['counted', 'counted', 'counted', 'counted']);
  });

  it('skips the retrieve of a chat another replica counted, and stops on close', async () => {
    const t = setup({ countedElsewhere: async (c) => c.chatId === 'elsewhere' });
    t.followUps.open(chat('elsewhere'));
    await t.advanceTo(1000);
    assert.deepEqual(t.retrieves, []);
    assert.deepEqual(t.outcomes, ['claimed']);
    t.followUps.open(chat('late'));
    t.followUps.close();
    assert.equal(t.timers.size, 0);
    assert.equal(t.followUps.pending, 0);
    t.followUps.open(chat('after-close'));
    assert.equal(t.followUps.pending, 0);
  });
});
