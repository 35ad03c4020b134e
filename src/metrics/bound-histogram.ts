import { Histogram, type HistogramConfiguration, type LabelValues } from 'prom-client';

/** One label set of a histogram, bound once: observing it hashes no labels. */
export interface BoundObserver {
  observe(value: number): void;
}

/** Bucket counts kept in place, per bucket (not cumulative), as prom-client keeps them. */
class Observations implements BoundObserver {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    // prom-client refuses a value that is not a finite number; a duration always is one.
    if (!Number.isFinite(value)) return;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    if (i < bounds.length) this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count += 1;
  }

  zero(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

/** The value pairs prom-client's registry formats (histogram.js setValuePair). */
interface ValuePair {
  labels: Record<string, string | number>;
  sharedLabels: Record<string, string | number>;
  value: number;
  metricName: string;
  /** Exemplars are off: null on a bucket, undefined on the sum and count, as prom-client sets them. */
  exemplar: null | undefined;
}

/**
 * A prom-client Histogram whose hot label sets are bound once (`bind`): prom-client's own
 * `labels(...).observe` checks and hashes the label values on every call, ~4 µs of a cached
 * request's two observations (bench/README.md). A bound set counts into its own arrays, and is
 * exported at scrape time in prom-client's own shape, after the sets observed the usual way: the
 * registry prints the same text. A label set is either bound or observed the usual way, never both.
 */
export class BoundHistogram<T extends string> extends Histogram<T> {
  private readonly bound: Array<{ labels: LabelValues<T>; observations: Observations }> = [];
  private readonly upperBounds: readonly number[];

  constructor(config: HistogramConfiguration<T> & { buckets: number[] }) {
    super(config);
    this.upperBounds = [...config.buckets].sort((a, b) => a - b);
  }

  bind(labels: LabelValues<T>): BoundObserver {
    const observations = new Observations(this.upperBounds);
    this.bound.push({ labels, observations });
    return observations;
  }

  /** Read by the registry for the text format, and by get(): prom-client's own values, then the bound sets'. */
  async getForPromString(): Promise<{ values: ValuePair[] }> {
    const parent = Histogram.prototype as unknown as { getForPromString(this: Histogram<T>): Promise<{ values: ValuePair[] }> };
    const data = await parent.getForPromString.call(this);
    const name = (this as unknown as { name: string }).name;
    for (const { labels, observations } of this.bound) {
      if (observations.count === 0) continue;
      const shared = labels as Record<string, string | number>;
      let cumulative = 0;
      this.upperBounds.forEach((le, i) => {
        cumulative += observations.counts[i] as number;
        data.values.push({ labels: { le }, sharedLabels: shared, value: cumulative, metricName: `${name}_bucket`, exemplar: null });
      });
      data.values.push(
        { labels: { le: '+Inf' }, sharedLabels: shared, value: observations.count, metricName: `${name}_bucket`, exemplar: null },
        { labels: {}, sharedLabels: shared, value: observations.sum, metricName: `${name}_sum`, exemplar: undefined },
        { labels: {}, sharedLabels: shared, value: observations.count, metricName: `${name}_count`, exemplar: undefined },
      );
    }
    return data;
  }

  override reset(): void {
    super.reset();
    // prom-client's constructor calls reset() before this class's own fields exist.
    const bound = this.bound as typeof this.bound | undefined;
    for (const { observations } of bound ?? []) observations.zero();
  }
}
