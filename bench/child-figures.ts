import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { hasTaskset, ROOT } from './lib.js';
import type { Report } from './report.js';

/** Runs a bench script in a fresh process on CPU 1 and returns the JSON of its last line. */
function childJson(script: string, extraNodeArgs: string[] = []): Record<string, unknown> {
  const cmd = hasTaskset() ? ['taskset', '-c', '1', process.execPath] : [process.execPath];
  const text = execFileSync(cmd[0] as string, [...cmd.slice(1), ...extraNodeArgs, '--import', 'tsx', join(ROOT, 'bench', script)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  return JSON.parse(text.trim().split('\n').at(-1) as string) as Record<string, unknown>;
}

/** Section 5: token cache memory, measured twice in two fresh processes (A and A'). */
export function reportMemory(report: Report): void {
  const runs = [childJson('memory.ts', ['--expose-gc']), childJson('memory.ts', ['--expose-gc'])];
  report.note('## 5. Token cache memory at 100,000 sessions');
  report.note();
  report.note("Two fresh processes (A and A'), each filling the real token cache with 100,000 sessions; the difference is the noise floor.");
  report.note();
  report.table(
    ['run', 'heap bytes per session', 'RSS bytes per session', 'heap MiB', 'RSS MiB'],
    runs.map((r, i) => [i === 0 ? 'A' : "A'", String(r.heapPerEntry), String(r.rssPerEntry), String(r.heapDeltaMiB), String(r.rssDeltaMiB)]),
  );
  const worst = Math.max(...runs.map((r) => Number(r.rssPerEntry)));
  report.note(`- RSS per cached session, the larger of the two: **${worst} bytes** (target under 1 KiB: ${worst < 1024 ? 'met' : 'NOT met'})`);
  report.note();
}

/** Section 6: caller-JWT verification cost, measured twice in two fresh processes. */
export function reportJwtCost(report: Report): void {
  const runs = [childJson('jwt-verify.ts'), childJson('jwt-verify.ts')];
  report.note('## 6. Caller-JWT verification cost (one core)');
  report.note();
  report.note("Operations per second in two fresh processes on CPU 1, given as A / A' (the spread is the noise floor).");
  report.note();
  const rows = ['RS256', 'ES256', 'HS256'].map((alg) => {
    const [a, b] = runs.map((r) => r[alg] as Record<string, number>) as [Record<string, number>, Record<string, number>];
    return [alg, `${a.serial} / ${b.serial}`, `${a.parallel} / ${b.parallel}`, `${a.cached} / ${b.cached}`];
  });
  report.table(['algorithm', 'jose verify, 1 in flight', 'jose verify, 32 in flight', 'gateway jwt-source, same token again'], rows);
}
