import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { describe, it, mock } from 'node:test';
import { GatewayError } from '../../../src/errors.js';
import { createConcurrencyLimiter } from '../../../src/policy/concurrency-limit.js';
import { createBodyBudget } from '../../../src/proxy/body-budget.js';
import { checkJsonMediaType, readBufferedBody } from '../../../src/proxy/request-body.js';

/** A request body stream with the headers a client declared. */
function fakeRequest(headers: Record<string, string>): IncomingMessage & PassThrough {
  return Object.assign(new PassThrough(), { headers }) as unknown as IncomingMessage & PassThrough;
}
const reason = (name: string) => (err: unknown) => err instanceof GatewayError && err.reason === name;

describe('body limits: the shared budget, the read deadline, the media type, the concurrency cap', () => {
  it('the budget takes what fits and gives it back', () => {
    const seen: number[] = [];
    const budget = createBodyBudget(100, (n) => seen.push(n));
    assert.equal(budget.take(60), true);
    assert.equal(budget.take(41), false);
    assert.equal(budget.take(40), true);
    assert.equal(budget.inUse, 100);
    budget.give(60);
    budget.give(60);
    assert.equal(budget.inUse, 0, 'never below zero');
    assert.deepEqual(seen, [60, 100, 40, 0]);
  });

  it('a declared length that does not fit is 503 with Retry-After before a byte is read', async () => {
    const budget = createBodyBudget(100);
    budget.take(50);
    const limits: string[] = [];
    const req = fakeRequest({ 'content-length': '60' });
    await assert.rejects(readBufferedBody(req, { maxBytes: 1000, budget, onLimit: (l) => limits.push(l) }), (err: unknown) => reason('gateway-busy')(err) && (err as GatewayError).headers['retry-after'] === '2');
    assert.deepEqual(limits, ['body_budget']);
    assert.equal(budget.inUse, 50);
  });

  it('a chunked body takes the budget chunk by chunk, and reports what it reserved', async () => {
    const budget = createBodyBudget(10);
    const reserved: number[] = [];
    const req = fakeRequest({ 'transfer-encoding': 'chunked' });
    const read = readBufferedBody(req, { maxBytes: 100, budget, onReserved: (n) => reserved.push(n) });
    req.write('12345');
    req.write('67890');
    req.end('x');
    await assert.rejects(read, reason('gateway-busy'));
    assert.deepEqual(reserved, [5, 5]);
  });

  it('a body that does not arrive by the deadline is 408 (an injected clock, no waiting)', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const limits: string[] = [];
      const req = fakeRequest({ 'content-length': '10' });
      const read = readBufferedBody(req, { maxBytes: 100, deadlineMs: 30_000, onLimit: (l) => limits.push(l) });
      req.write('12345');
      mock.timers.tick(29_999);
      req.write('6789');
      mock.timers.tick(1);
      await assert.rejects(read, reason('body-timeout'));
      assert.deepEqual(limits, ['body_timeout']);
      assert.equal(req.isPaused(), true, 'nothing more is read');
    } finally {
      mock.timers.reset();
    }
  });

  it('a body within its bounds is returned as sent', async () => {
    const req = fakeRequest({ 'content-length': '7' });
    const read = readBufferedBody(req, { maxBytes: 7, budget: createBodyBudget(7), deadlineMs: 1000 });
    req.end('{"a":1}');
    assert.equal((await read).toString(), '{"a":1}');
    const over = fakeRequest({});
    const tooBig = readBufferedBody(over, { maxBytes: 3 });
    over.end('1234');
    await assert.rejects(tooBig, reason('body-too-large'));
  });

  it('JSON routes take application/json in UTF-8, unencoded', () => {
    for (const type of ['application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON;CHARSET=UTF-8', 'application/json;charset="utf-8"', 'application/json; charset=utf8']) {
      assert.doesNotThrow(() => checkJsonMediaType({ 'content-type': type }), type);
    }
    for (const headers of [{}, { 'content-type': 'application/x-www-form-urlencoded' }, { 'content-type': 'text/json' }, { 'content-type': 'application/json; charset=iso-8859-1' }, { 'content-type': 'application/json', 'content-encoding': 'br' }]) {
      assert.throws(() => checkJsonMediaType(headers), reason('unsupported-media-type'), JSON.stringify(headers));
    }
    assert.doesNotThrow(() => checkJsonMediaType({ 'content-type': 'application/json', 'content-encoding': 'identity' }));
  });

  it('the concurrency cap counts per identity and frees a slot once', () => {
    const limiter = createConcurrencyLimiter(2);
    const a = limiter.acquire('alice');
    const b = limiter.acquire('alice');
    assert.ok(a && b);
    assert.equal(limiter.acquire('alice'), undefined);
    assert.ok(limiter.acquire('bob'));
    a();
    a();
    assert.equal(limiter.inFlight('alice'), 1);
    assert.ok(limiter.acquire('alice'));
    const off = createConcurrencyLimiter(0);
    for (let i = 0; i < 1000; i++) assert.ok(off.acquire('x'));
  });
});
