import { interleave, load, median, ratios, type LoadResult } from './lib.js';
import { fixed, ratio, verdict, type Report } from './report.js';
import { BARE, BARE_UNDICI, DIRECT, GATEWAY, GATEWAY_AGAIN, NGINX, type ProxyTargets, type Target } from './targets.js';

export interface Settings {
  rounds: number;
  seconds: number;
}

const CONNECTIONS = 32;
const WARM_UP_SECONDS = 1;

/** Closed-loop keep-alive load on every target, interleaved; one slice of `seconds` each. */
export async function measureThroughput(cast: ProxyTargets, settings: Settings): Promise<Map<string, LoadResult[]>> {
  const run = (t: Target, seconds: number, counted: boolean) =>
    load(t.url, { connections: CONNECTIONS, seconds, ...(t.headers ? { headers: t.headers } : {}), ...(counted ? { pid: t.pids } : {}) });
  return interleave(
    cast.targets,
    settings.rounds,
    async (t, round) => {
      const r = await run(t, settings.seconds, true);
      process.stderr.write(`  throughput round ${round + 1} ${t.name}: ${r.rps.toFixed(0)} req/s, ${r.cpuPerRequestUs.toFixed(0)} µs CPU/req, errors ${r.errors}, non-2xx ${r.non2xx}\n`);
      return r;
    },
    (t) => run(t, WARM_UP_SECONDS, false),
  );
}

/** Section 1: throughput and CPU per request against direct, bare http-proxy, undici and nginx. */
export async function reportThroughput(report: Report, cast: ProxyTargets, settings: Settings): Promise<void> {
  const results = await measureThroughput(cast, settings);
  report.note('## 1. Hot path: throughput and CPU per request');
  report.note();
  report.note(`GET ${'`/v1/bots/bench`'} (a 121-byte JSON answer), ${CONNECTIONS} keep-alive connections (autocannon), ${settings.rounds} interleaved rounds of`);
  report.note(`${settings.seconds} s per target, the order rotating each round, each slice after an unmeasured ${WARM_UP_SECONDS} s burst. Medians over the rounds;`);
  report.note('ratios are the median of the per-round ratios, with their range in brackets. "CPU/req" is the CPU time the process');
  report.note('under test spent per request (utime+stime from /proc; for "direct", the origin\'s), the steadiest figure here.');
  report.note();
  const rows = cast.targets.map((t) => {
    const rs = results.get(t.name) as LoadResult[];
    return [
      t.name,
      fixed(median(rs.map((r) => r.rps))),
      fixed(median(rs.map((r) => r.cpuPerRequestUs))),
      fixed(median(rs.map((r) => r.p50))),
      fixed(median(rs.map((r) => r.p99))),
      rs.reduce((a, r) => a + r.errors, 0),
      rs.reduce((a, r) => a + r.non2xx, 0),
    ];
  });
  report.table(['target', 'req/s', 'CPU µs/req', 'p50 ms', 'p99 ms', 'errors', 'non-2xx'], rows);
  const rps = (r: LoadResult) => r.rps;
  const cpu = (r: LoadResult) => r.cpuPerRequestUs;
  const toBareRps = ratios(results, GATEWAY, BARE, rps);
  const toBareCpu = ratios(results, GATEWAY, BARE, cpu);
  const toNginx = ratios(results, GATEWAY, NGINX, rps);
  report.note(`- **noise floor** (the same build in two processes, ${GATEWAY_AGAIN} / ${GATEWAY}): req/s ${ratio(ratios(results, GATEWAY_AGAIN, GATEWAY, rps))}, CPU/req ${ratio(ratios(results, GATEWAY_AGAIN, GATEWAY, cpu))}`);
  report.note(`- gateway / bare http-proxy, req/s: **${ratio(toBareRps)}** (target ≥ 0.9x, stretch 1.0x: ${verdict(toBareRps?.median, '>=', 0.9)})`);
  report.note(`- gateway / bare http-proxy, CPU/req: **${ratio(toBareCpu)}** (target ≤ 1.2x: ${verdict(toBareCpu?.median, '<=', 1.2)})`);
  report.note(`- gateway / nginx, req/s: **${ratio(toNginx)}** (target ≥ 0.35x: ${toNginx ? verdict(toNginx.median, '>=', 0.35) : 'nginx not installed (apt-get install -y nginx)'}); CPU/req ${ratio(ratios(results, GATEWAY, NGINX, cpu))}`);
  if (results.has(BARE_UNDICI)) {
    report.note(`- gateway / bare undici (its own forwarder alone), CPU/req: ${ratio(ratios(results, GATEWAY, BARE_UNDICI, cpu))}; bare undici / bare http-proxy: CPU/req ${ratio(ratios(results, BARE_UNDICI, BARE, cpu))}, req/s ${ratio(ratios(results, BARE_UNDICI, BARE, rps))}`);
  }
  report.note(`- gateway / direct, req/s: ${ratio(ratios(results, GATEWAY, DIRECT, rps))}`);
  report.note();
}
