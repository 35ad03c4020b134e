import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRateLimiter } from '../../../src/policy/rate-limit.js';
import { createFakeClock } from '../../helpers/clock.js';

describe('local rate limiter', () => {
  it('admits the limit at once, then one request per 60/limit seconds', () => {
    const clock = createFakeClock();
    const limiter = createRateLimiter({ requestsPerMinute: 10, now: clock.now });
    const first = Array.from({ length: 12 }, () => limiter.take('alice'));
    assert.equal(first.filter((d) => d.allowed).length, 10);
    assert.deepEqual(first[10], { allowed: false, retryAfterSeconds: 6 });
    clock.advance(6000);
    assert.deepEqual(limiter.take('alice'), { allowed: true });
    assert.equal(limiter.take('alice').allowed, false);
    assert.deepEqual(limiter.take('bob'), { allowed: true }, 'per identity');
  });

  it('decides synchronously through tryTakeLocal, and 0 turns the limit off', () => {
    const limiter = createRateLimiter({ requestsPerMinute: 0 });
    for (let i = 0; i < 1000; i++) assert.deepEqual(limiter.tryTakeLocal('alice'), { allowed: true });
  });
});
