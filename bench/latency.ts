import { differences, interleave, median } from './lib.js';
import { buildLoadgen, openLoop, type LoadgenResult } from './loadgen.js';
import { delta, fixed, verdict, type Report } from './report.js';
import { BARE, DIRECT, GATEWAY, GATEWAY_AGAIN, NGINX, type ProxyTargets } from './targets.js';
import type { Settings } from './hot-path.js';

const RATE = 1000;
const CONNECTIONS = 16;
const WARM_UP_SECONDS = 1;

/**
 * Section 2: added latency at a fixed 1,000 req/s, open loop (bench/loadgen), measured from
 * each request's scheduled send time. Added = target minus direct in the same round.
 */
export async function reportLatency(report: Report, cast: ProxyTargets, settings: Settings): Promise<void> {
  report.note('## 2. Added latency at a fixed 1,000 req/s (open loop)');
  report.note();
  if (!buildLoadgen()) {
    report.note('Not measured: Go is not installed, and the open-loop generator (bench/loadgen) is built with it.');
    report.note();
    return;
  }
  const names = [DIRECT, BARE, GATEWAY, GATEWAY_AGAIN, NGINX];
  const targets = cast.targets.filter((t) => names.includes(t.name));
  const results = await interleave(targets, settings.rounds, async (t, round) => {
    const r = await openLoop(t, { rate: RATE, seconds: settings.seconds, warmUpSeconds: WARM_UP_SECONDS, connections: CONNECTIONS });
    process.stderr.write(`  latency round ${round + 1} ${t.name}: p50 ${fixed(r.latencyUs.p50)} µs, p99 ${fixed(r.latencyUs.p99)} µs, timer lag p99 ${fixed(r.sendLagUs.p99)} µs, errors ${r.errors}\n`);
    return r;
  });
  report.note(`bench/loadgen (Go, built at bench time) sends GETs at ${RATE.toLocaleString('en-US')}/s on a kernel timer over ${CONNECTIONS} keep-alive connections and times`);
  report.note('each request from its scheduled send time, so a stall counts against every request it delays (no coordinated');
  report.note(`omission). ${settings.rounds} interleaved rounds of ${settings.seconds} s per target after a ${WARM_UP_SECONDS} s warm-up at the same rate; medians over the`);
  report.note('rounds. "timer lag" is how late the generator\'s own timer handed requests over: its share of the figures.');
  report.note();
  const rows = targets.map((t) => {
    const rs = results.get(t.name) as LoadgenResult[];
    const m = (f: (r: LoadgenResult) => number, digits = 0) => fixed(median(rs.map(f)), digits);
    return [t.name, m((r) => r.latencyUs.p50), m((r) => r.latencyUs.p90), m((r) => r.latencyUs.p99), m((r) => r.latencyUs.p999), m((r) => r.achievedRate), m((r) => r.cpuPerRequestUs), m((r) => r.sendLagUs.p99), rs.reduce((a, r) => a + r.errors + r.non2xx, 0)];
  });
  report.table(['target', 'p50 µs', 'p90 µs', 'p99 µs', 'p99.9 µs', 'req/s', 'CPU µs/req', 'timer lag p99 µs', 'errors + non-2xx'], rows);
  const ms = (f: (r: LoadgenResult) => number) => (r: LoadgenResult) => f(r) / 1000;
  const p50 = ms((r) => r.latencyUs.p50);
  const p99 = ms((r) => r.latencyUs.p99);
  const addedP50 = differences(results, GATEWAY, DIRECT, p50);
  const addedP99 = differences(results, GATEWAY, DIRECT, p99);
  report.note(`- **noise floor** (${GATEWAY_AGAIN} minus ${GATEWAY}): p50 ${delta(differences(results, GATEWAY_AGAIN, GATEWAY, p50), 'ms', 3)}, p99 ${delta(differences(results, GATEWAY_AGAIN, GATEWAY, p99), 'ms', 3)}`);
  report.note(`- gateway added p50: **${delta(addedP50, 'ms', 3)}** (target ≤ 0.5 ms: ${verdict(addedP50?.median, '<=', 0.5)})`);
  report.note(`- gateway added p99: **${delta(addedP99, 'ms', 3)}** (target ≤ 2 ms: ${verdict(addedP99?.median, '<=', 2)})`);
  report.note(`- bare http-proxy added: p50 ${delta(differences(results, BARE, DIRECT, p50), 'ms', 3)}, p99 ${delta(differences(results, BARE, DIRECT, p99), 'ms', 3)}`);
  if (results.get(NGINX)?.length) report.note(`- nginx added: p50 ${delta(differences(results, NGINX, DIRECT, p50), 'ms', 3)}, p99 ${delta(differences(results, NGINX, DIRECT, p99), 'ms', 3)}`);
  report.note();
}
