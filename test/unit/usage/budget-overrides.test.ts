import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseOverrides, watchOverrides } from '../../../src/usage/budget-overrides.js';

describe('budget overrides file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'csg-overrides-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;

  /** A watched file; reloads are driven by the test (the poll is far away, file events may come too). */
  function watched(text: string) {
    const path = join(dir, `overrides-${++n}.yaml`);
    writeFileSync(path, text);
    const events: string[] = [];
    const watcher = watchOverrides({ path, pollMs: 3_600_000, onReload: (outcome, detail) => events.push(`${outcome}:${detail.entries ?? detail.error}`) });
    const rewrite = (next: string) => {
      writeFileSync(path, next);
      watcher.reload();
    };
    return { watcher, events, rewrite };
  }

  const SUSPENDED = '- subject: mallory\n  tokensPerDay: 0\n';

  it('overrides-empty-reload-keeps-last-good: a file read empty on a reload (a write caught half way) keeps the version in force, suspensions included', () => {
    const { watcher, events, rewrite } = watched(SUSPENDED);
    try {
      for (const empty of ['', '   \n', '# being rewritten\n']) {
        rewrite(empty);
        assert.deepEqual(watcher.current.lookup('jwt', 'mallory'), { tokensPerDay: 0 }, `still suspended after ${JSON.stringify(empty)}`);
      }
      assert.equal(events.filter((e) => e.startsWith('error:')).length, 1, 'reported once');
      assert.match(events[0] ?? '', /empty/);
      rewrite('[]\n');
      assert.equal(watcher.current.size, 0, 'an explicit empty list is no overrides');
      assert.equal(events.at(-1), 'ok:0');
    } finally {
      watcher.close();
    }
  });

  it('an empty file at start-up is no overrides', () => {
    assert.equal(parseOverrides('').size, 0);
    assert.throws(() => parseOverrides('', { reload: true }), /empty/);
  });

  it('overrides-same-bad-edit-reported-again: a bad edit, reverted, then made again is reported both times, and the revert is reported as the good version back', () => {
    const { watcher, events, rewrite } = watched(SUSPENDED);
    try {
      const bad = '- subject: mallory\n  tokensPerDay: lots\n';
      rewrite(bad);
      rewrite(bad);
      rewrite(SUSPENDED);
      rewrite(bad);
      assert.deepEqual(
        events.map((e) => e.split(':')[0]),
        ['error', 'ok', 'error'],
      );
      assert.equal(events[1], 'ok:1');
      assert.deepEqual(watcher.current.lookup('jwt', 'mallory'), { tokensPerDay: 0 });
    } finally {
      watcher.close();
    }
  });
});
