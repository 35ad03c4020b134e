import { execFileSync, execSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { measureThroughput } from './hot-path.js';
import { hasTaskset, median, ratios, ROOT, type LoadResult } from './lib.js';
import { createReport, fixed, ratio } from './report.js';
import { BARE, BARE_UNDICI, GATEWAY, GATEWAY_AGAIN, startProxyTargets } from './targets.js';

/**
 * `npm run bench:compare -- <git ref>`: this tree's gateway against another commit's, on the
 * hot path, in one run: interleaved rounds, the same build twice (the noise floor), the bare
 * http-proxy and the bare undici forwarder as floors, CPU per request from /proc. The other
 * commit is exported with `git archive` into bench/.tmp and built there (no worktree, no
 * checkout): docs/architecture.md's forwarder decision was measured this way.
 */
const { values, positionals } = parseArgs({ allowPositionals: true, options: { rounds: { type: 'string' }, seconds: { type: 'string' } } });
const ref = positionals[0];
if (!ref) throw new Error('usage: npm run bench:compare -- <git ref> [--rounds N] [--seconds S]');
const settings = { rounds: Number(values.rounds ?? 7), seconds: Number(values.seconds ?? 5) };

function buildRef(): { name: string; root: string } {
  const sha = execFileSync('git', ['rev-parse', '--verify', `${ref}^{commit}`], { cwd: ROOT, encoding: 'utf8' }).trim();
  const root = join(ROOT, 'bench', '.tmp', `build-${sha.slice(0, 12)}`);
  if (!existsSync(join(root, 'dist', 'main.js'))) {
    mkdirSync(root, { recursive: true });
    execSync(`git archive ${sha} | tar -x -C ${JSON.stringify(root)}`, { cwd: ROOT, stdio: 'inherit' });
    // The same installed packages: the comparison is of our code, not of a reinstall.
    if (!existsSync(join(root, 'node_modules'))) symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  }
  return { name: `gateway @ ${sha.slice(0, 7)}`, root };
}

async function main(): Promise<void> {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  const other = buildRef();
  if (hasTaskset()) execFileSync('taskset', ['-cp', '0', String(process.pid)], { stdio: 'ignore' });
  const cast = await startProxyTargets({ nginx: false, bareUndici: true, builds: [other] });
  let results: Map<string, LoadResult[]>;
  try {
    results = await measureThroughput(cast, settings);
  } finally {
    await cast.stop();
  }
  const report = createReport();
  const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  report.note(`# This tree (${head}${execFileSync('git', ['status', '--porcelain'], { cwd: ROOT, encoding: 'utf8' }).trim() ? ', with changes' : ''}) against ${other.name}`);
  report.note();
  report.note(`Hot path, 32 keep-alive connections, ${settings.rounds} interleaved rounds of ${settings.seconds} s per target (each after a 1 s unmeasured burst); medians.`);
  report.note();
  report.table(
    ['target', 'req/s', 'CPU µs/req', 'errors + non-2xx'],
    cast.targets.map((t) => {
      const rs = results.get(t.name) as LoadResult[];
      return [t.name, fixed(median(rs.map((r) => r.rps))), fixed(median(rs.map((r) => r.cpuPerRequestUs))), rs.reduce((a, r) => a + r.errors + r.non2xx, 0)];
    }),
  );
  const rps = (r: LoadResult) => r.rps;
  const cpu = (r: LoadResult) => r.cpuPerRequestUs;
  report.note(`- noise floor (${GATEWAY_AGAIN} / ${GATEWAY}): req/s ${ratio(ratios(results, GATEWAY_AGAIN, GATEWAY, rps))}, CPU/req ${ratio(ratios(results, GATEWAY_AGAIN, GATEWAY, cpu))}`);
  report.note(`- ${other.name} / this tree: req/s ${ratio(ratios(results, other.name, GATEWAY, rps))}, CPU/req ${ratio(ratios(results, other.name, GATEWAY, cpu))}`);
  for (const floor of [BARE, BARE_UNDICI]) {
    report.note(`- against ${floor}, CPU/req: this tree ${ratio(ratios(results, GATEWAY, floor, cpu))}, ${other.name} ${ratio(ratios(results, other.name, floor, cpu))}; req/s: this tree ${ratio(ratios(results, GATEWAY, floor, rps))}, ${other.name} ${ratio(ratios(results, other.name, floor, rps))}`);
  }
  report.note(`- ${BARE_UNDICI} / ${BARE}: CPU/req ${ratio(ratios(results, BARE_UNDICI, BARE, cpu))}, req/s ${ratio(ratios(results, BARE_UNDICI, BARE, rps))}`);
  const file = join(ROOT, 'bench', '.tmp', `compare-${other.name.split('@ ')[1]}.md`);
  writeFileSync(file, `${report.lines.join('\n')}\n`);
  process.stdout.write(`\nwrote ${file.slice(ROOT.length)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:compare failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
