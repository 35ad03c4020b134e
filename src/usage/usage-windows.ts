/** Closed set: the budget windows, and the `window` label of coze_gateway_budget_refusals_total. */
export const USAGE_WINDOWS = ['day', 'month'] as const;
export type UsageWindow = (typeof USAGE_WINDOWS)[number];

/** One window of one kind: its label (`2026-03-29`, `2026-03`) and when it ends. */
export interface WindowSpan {
  label: string;
  /** Unix ms of the first instant of the next window. */
  endsAtMs: number;
}

export interface UsageWindows {
  /** The day and the month `nowMs` falls in, in the configured time zone. */
  at(nowMs: number): Record<UsageWindow, WindowSpan>;
  readonly timeZone: string;
  /** `nowMs` as a local ISO 8601 time with its offset, e.g. 2026-03-30T00:00:00+02:00. */
  localIso(nowMs: number): string;
}

/**
 * Days and months begin at local midnight in an IANA time zone. Their ends are found by asking
 * Intl for the local date rather than by adding 24 hours, so a day of 23 or 25 hours (a DST
 * change) or a zone that skips midnight itself ends when the local date really changes. A
 * window is computed once and reused until it ends, so the request path only compares numbers.
 */
export function createUsageWindows(timeZone: string): UsageWindows {
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
  const parts = (ms: number) => {
    const out: Record<string, string> = {};
    for (const p of format.formatToParts(ms)) out[p.type] = p.value;
    return out as Record<'year' | 'month' | 'day' | 'hour' | 'minute' | 'second', string>;
  };
  const dayLabel = (ms: number) => {
    const p = parts(ms);
    return `${p.year}-${p.month}-${p.day}`;
  };
  const monthLabel = (ms: number) => dayLabel(ms).slice(0, 7);

  /** The first instant after `fromMs` whose label differs: a search between two known points. */
  function nextChange(fromMs: number, labelOf: (ms: number) => string, stepMs: number): number {
    const label = labelOf(fromMs);
    let lo = fromMs;
    let hi = fromMs + stepMs;
    while (labelOf(hi) === label) {
      lo = hi;
      hi += stepMs;
    }
    while (hi - lo > 1) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (labelOf(mid) === label) lo = mid;
      else hi = mid;
    }
    return hi;
  }

  const cached: Partial<Record<UsageWindow, WindowSpan & { startsAtMs: number }>> = {};
  function span(kind: UsageWindow, nowMs: number): WindowSpan {
    const hit = cached[kind];
    if (hit && nowMs >= hit.startsAtMs && nowMs < hit.endsAtMs) return hit;
    const labelOf = kind === 'day' ? dayLabel : monthLabel;
    // Steps shorter than the shortest window (a 23-hour day, a 28-day month) skip none.
    const endsAtMs = nextChange(nowMs, labelOf, kind === 'day' ? 6 * 3_600_000 : 7 * 86_400_000);
    const fresh = { label: labelOf(nowMs), endsAtMs, startsAtMs: nowMs };
    cached[kind] = fresh;
    return fresh;
  }

  return {
    timeZone,
    at: (nowMs) => ({ day: span('day', nowMs), month: span('month', nowMs) }),
    localIso(nowMs) {
      const p = parts(nowMs);
      const wall = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second));
      const offsetMin = Math.round((wall - Math.floor(nowMs / 1000) * 1000) / 60_000);
      const sign = offsetMin < 0 ? '-' : '+';
      const abs = Math.abs(offsetMin);
      const offset = offsetMin === 0 ? 'Z' : `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
      return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}:${p.second}${offset}`;
    },
  };
}
