import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { throttleLog } from '../../../src/log/throttle.js';
import { createFakeClock } from '../../helpers/clock.js';

describe('throttleLog', () => {
  it('log-throttle-one-line-per-interval: the first event of an interval is written with the count left out since the last line', () => {
    const clock = createFakeClock(0);
    const written: Array<[number, string]> = [];
    const warn = throttleLog(1000, clock.now, (suppressed, who: string) => written.push([suppressed, who]));
    warn('a');
    warn('b');
    warn('c');
    clock.advance(999);
    warn('d');
    assert.deepEqual(written, [[0, 'a']]);
    clock.advance(1);
    warn('e');
    assert.deepEqual(written, [[0, 'a'], [3, 'e']]);
    clock.advance(5000);
    warn('f');
    assert.deepEqual(written.at(-1), [0, 'f'], 'the count starts again after each line');
  });
});
