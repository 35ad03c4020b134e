import type { Spread } from './lib.js';

/** The markdown of RESULTS.md, echoed to stdout as it is written. */
export interface Report {
  readonly lines: string[];
  note(line?: string): void;
  table(header: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): void;
}

export function createReport(): Report {
  const lines: string[] = [];
  const note = (line = '') => {
    lines.push(line);
    process.stdout.write(`${line}\n`);
  };
  return {
    lines,
    note,
    table(header, rows) {
      note(`| ${header.join(' | ')} |`);
      note(`|${header.map(() => '---').join('|')}|`);
      for (const row of rows) note(`| ${row.join(' | ')} |`);
      note();
    },
  };
}

/** "0.93x [0.88–0.97]": the median of per-round ratios and their range. */
export function ratio(s: Spread | undefined, digits = 2): string {
  if (!s) return 'n/a';
  return s.n > 1 ? `${s.median.toFixed(digits)}x [${s.min.toFixed(digits)}–${s.max.toFixed(digits)}]` : `${s.median.toFixed(digits)}x`;
}

/** "+0.21 ms [+0.10–+0.35]": the median of per-round differences and their range. */
export function delta(s: Spread | undefined, unit: string, digits = 2): string {
  if (!s) return 'n/a';
  const f = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;
  return s.n > 1 ? `${f(s.median)} ${unit} [${f(s.min)}–${f(s.max)}]` : `${f(s.median)} ${unit}`;
}

/** "met" or "NOT met" for a target, judged on the median. */
export function verdict(value: number | undefined, comparison: '>=' | '<=', target: number): string {
  if (value === undefined || Number.isNaN(value)) return 'not measured';
  return (comparison === '>=' ? value >= target : value <= target) ? 'met' : 'NOT met';
}

export const fixed = (v: number | undefined, digits = 0): string => (v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(digits));
