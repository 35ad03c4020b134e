import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { reportBudgets } from './budgets.js';
import { reportJwtCost, reportMemory } from './child-figures.js';
import { reportThroughput, type Settings } from './hot-path.js';
import { reportLatency } from './latency.js';
import { reportLeaks } from './leaks.js';
import { hasTaskset, ROOT } from './lib.js';
import { createReport } from './report.js';
import { measureScaleOut, reportScaleOut } from './scale-out.js';
import { reportSse } from './sse.js';
import { reportStampede } from './stampede.js';
import { startProxyTargets } from './targets.js';

/**
 * `npm run bench`: every figure of BENCH.md from one run, side by side, into bench/RESULTS.md.
 * The process under test runs on CPU 1; the origin and the load generators on CPU 0 (when
 * taskset exists). Every section interleaves its targets over rounds and reports medians, a
 * noise floor (the same build measured twice, A and A'), and CPU per request from /proc.
 *
 *   npm run bench                           all sections, BENCH_ROUNDS (5) x BENCH_SECONDS (5)
 *   npm run bench -- --quick                all sections, 2 rounds of 2 s (a smoke run)
 *   npm run bench -- --only hot,latency     some sections
 *   npm run bench -- --quick --only budgets the cost of budgets alone, as a smoke run
 * Only a full run (every section, not --quick) writes bench/RESULTS.md; the others write
 * bench/.tmp/RESULTS.partial.md.
 */
const SECTIONS = ['hot', 'latency', 'sse', 'stampede', 'memory', 'jwt', 'leaks', 'scale', 'budgets'] as const;
type Section = (typeof SECTIONS)[number];

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
  },
});
const only = values.only ? (values.only.split(',').map((s) => s.trim()) as Section[]) : [...SECTIONS];
for (const s of only) if (!SECTIONS.includes(s)) throw new Error(`unknown section ${s}; the sections are ${SECTIONS.join(', ')}`);
const settings: Settings = {
  rounds: Number(values.rounds ?? process.env.BENCH_ROUNDS ?? (values.quick ? 2 : 5)),
  seconds: Number(values.seconds ?? process.env.BENCH_SECONDS ?? (values.quick ? 2 : 5)),
};
const report = createReport();
const wants = (s: Section) => only.includes(s);

async function main(): Promise<void> {
  const started = Date.now();
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  if (hasTaskset()) execFileSync('taskset', ['-cp', '0', String(process.pid)], { stdio: 'ignore' });
  const load = loadavg().map((l) => l.toFixed(1)).join(', ');
  report.note('# Benchmark results');
  report.note();
  report.note(`Machine: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; load average at the start ${load}.`);
  const args = process.argv.slice(2).join(' ');
  report.note(`Command: \`npm run bench${args ? ` -- ${args}` : ''}\` (${settings.rounds} rounds of ${settings.seconds} s). Process under test on CPU 1, origin and load generators on CPU 0${hasTaskset() ? '' : ' (taskset missing: not pinned)'}.`);
  report.note('The machine is shared and noisy: compare the ratios measured side by side in this run, each next to its noise floor');
  report.note('(the same build measured twice, A and A\'), never absolute figures from one run against another.');
  report.note();

  if (wants('hot') || wants('latency') || wants('sse')) {
    const cast = await startProxyTargets({ nginx: true, bareUndici: true });
    try {
      if (wants('hot')) await reportThroughput(report, cast, settings);
      if (wants('latency')) await reportLatency(report, cast, settings);
      if (wants('sse')) await reportSse(report, cast, settings);
    } finally {
      await cast.stop();
    }
  }
  if (wants('stampede')) await reportStampede(report, settings);
  if (wants('memory')) reportMemory(report);
  if (wants('jwt')) reportJwtCost(report);
  if (wants('leaks')) await reportLeaks(report);
  if (wants('scale')) reportScaleOut(await measureScaleOut(settings.seconds, settings.rounds), report.note);
  if (wants('budgets')) await reportBudgets(report, settings);
  report.note(`Bench time: ${((Date.now() - started) / 60_000).toFixed(1)} min; load average at the end ${loadavg().map((l) => l.toFixed(1)).join(', ')}.`);

  // A smoke run or a partial one never replaces the committed results.
  const complete = SECTIONS.every(wants) && !values.quick;
  const file = complete ? join(ROOT, 'bench', 'RESULTS.md') : join(ROOT, 'bench', '.tmp', 'RESULTS.partial.md');
  mkdirSync(join(ROOT, 'bench', '.tmp'), { recursive: true });
  writeFileSync(file, `${report.lines.join('\n')}\n`);
  process.stdout.write(`\nwrote ${file.slice(ROOT.length)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
