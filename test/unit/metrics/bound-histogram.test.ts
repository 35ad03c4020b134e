import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { BoundHistogram } from '../../../src/metrics/bound-histogram.js';

const BUCKETS = [0.001, 0.01, 0.1, 1, 10];
const VALUES = [0, 0.0005, 0.001, 0.0010001, 0.05, 0.1, 0.5, 1, 9.99, 10, 11, 1e6, Number.NaN];

/** The same observations through prom-client's own children and through bound sets. */
function twins() {
  const plainRegistry = new Registry();
  const boundRegistry = new Registry();
  const config = { name: 'x_seconds', help: 'h', labelNames: ['route', 'method'] as const, buckets: BUCKETS };
  const plain = new Histogram({ ...config, registers: [plainRegistry] });
  const bound = new BoundHistogram({ ...config, registers: [boundRegistry] });
  return { plainRegistry, boundRegistry, plain, bound };
}

describe('bound histogram: prom-client histogram sets bound once', () => {
  it('prints the very text and values prom-client prints for the same observations', async () => {
    const { plainRegistry, boundRegistry, plain, bound } = twins();
    const sets = [
      { route: 'chat', method: 'POST' },
      { route: 'bot.retrieve', method: 'GET' },
      { route: 'never', method: 'GET' },
    ];
    const observers = sets.map((labels) => bound.bind(labels));
    sets.slice(0, 2).forEach((labels, i) => {
      for (const value of VALUES.slice(i * 3)) {
        if (Number.isFinite(value)) plain.labels(labels).observe(value);
        observers[i]?.observe(value);
      }
    });
    assert.equal(await boundRegistry.metrics(), await plainRegistry.metrics());
    assert.deepEqual(await bound.get(), await plain.get());
    assert.match(await boundRegistry.metrics(), /x_seconds_bucket\{le="0.1",route="chat",method="POST"\} 6/);
    assert.doesNotMatch(await boundRegistry.metrics(), /never/, 'a set never observed is not a series yet, as with prom-client');
  });

  it('sets observed the usual way come first, then the bound ones; reset zeroes both', async () => {
    const { plainRegistry, boundRegistry, plain, bound } = twins();
    plain.labels({ route: 'a', method: 'GET' }).observe(0.5);
    bound.labels({ route: 'a', method: 'GET' }).observe(0.5);
    plain.labels({ route: 'b', method: 'GET' }).observe(2);
    bound.bind({ route: 'b', method: 'GET' }).observe(2);
    assert.equal(await boundRegistry.metrics(), await plainRegistry.metrics());
    plainRegistry.resetMetrics();
    boundRegistry.resetMetrics();
    assert.equal(await boundRegistry.metrics(), await plainRegistry.metrics());
    assert.doesNotMatch(await boundRegistry.metrics(), /route=/);
  });
});
