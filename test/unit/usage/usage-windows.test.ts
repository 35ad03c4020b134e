import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createUsageWindows } from '../../../src/usage/usage-windows.js';

describe('usage windows in a time zone', () => {
  it('starts days and months at the local midnight', () => {
    const windows = createUsageWindows('Asia/Shanghai');
    // 23:30 UTC on 31 January is 07:30 on 1 February in Shanghai.
    const at = windows.at(Date.UTC(2026, 0, 31, 23, 30));
    assert.equal(at.day.label, '2026-02-01');
    assert.equal(at.month.label, '2026-02');
    assert.equal(at.day.endsAtMs, Date.UTC(2026, 1, 1, 16, 0));
    assert.equal(at.month.endsAtMs, Date.UTC(2026, 1, 28, 16, 0));
    assert.equal(windows.localIso(at.day.endsAtMs), '2026-02-02T00:00:00+08:00');
  });

  it('knows a 23-hour and a 25-hour day (DST in Europe/Berlin)', () => {
    const windows = createUsageWindows('Europe/Berlin');
    const spring = windows.at(Date.UTC(2026, 2, 29, 10, 0));
    assert.equal(spring.day.label, '2026-03-29');
    // Midnight of 30 March is 00:00+02:00 = 22:00 UTC on 29 March: the day had 23 hours.
    assert.equal(spring.day.endsAtMs, Date.UTC(2026, 2, 29, 22, 0));
    assert.equal(windows.localIso(spring.day.endsAtMs), '2026-03-30T00:00:00+02:00');
    const autumn = windows.at(Date.UTC(2026, 9, 25, 10, 0));
    assert.equal(autumn.day.endsAtMs - Date.UTC(2026, 9, 24, 22, 0), 25 * 3_600_000);
    assert.equal(windows.localIso(Date.UTC(2026, 9, 25, 12, 0)), '2026-10-25T13:00:00+01:00');
  });

  it('moves to the next window exactly at its end, whatever the order of the calls', () => {
    const windows = createUsageWindows('UTC');
    const end = Date.UTC(2026, 11, 31, 24, 0);
    assert.equal(windows.at(end - 1).day.label, '2026-12-31');
    assert.equal(windows.at(end - 1).month.label, '2026-12');
    assert.equal(windows.at(end).day.label, '2027-01-01');
    assert.equal(windows.at(end).month.label, '2027-01');
    // Back in time (a clock set back): the window is recomputed, not taken from the cache.
    assert.equal(windows.at(end - 86_400_000 - 1).day.label, '2026-12-30');
    assert.equal(windows.at(end - 86_400_000).day.label, '2026-12-31');
    assert.equal(windows.localIso(end), '2027-01-01T00:00:00Z');
  });
});
