import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { differences, interleave, percentile } from './lib.js';
import { delta, fixed, verdict, type Report } from './report.js';
import { DIRECT, GATEWAY, GATEWAY_AGAIN, type ProxyTargets, type Target } from './targets.js';
import type { Settings } from './hot-path.js';

const EVENTS = 50;
const GAP_MS = 20;
const STREAMS_PER_SLICE = 2;

interface StreamFigures {
  /** ms from the origin writing each event to the client reading it. */
  delays: number[];
  /** Events that reached the client in the same read as an earlier one (the origin writes each alone). */
  batched: number;
}

/** One chat stream from bench/origin.ts, whose events carry the time they were written. */
function stream(target: Target): Promise<StreamFigures> {
  const url = new URL(target.url);
  return new Promise((resolve, reject) => {
    const figures: StreamFigures = { delays: [], batched: 0 };
    const req = http.request(
      { host: url.hostname, port: url.port, path: `/v3/chat?events=${EVENTS}&gap=${GAP_MS}`, method: 'POST', agent: false, headers: { 'content-type': 'application/json', ...target.headers } },
      (res) => {
        let buffered = '';
        res.on('data', (chunk: Buffer) => {
          const now = performance.timeOrigin + performance.now();
          buffered += chunk.toString();
          let inThisRead = 0;
          let end;
          while ((end = buffered.indexOf('\n\n')) !== -1) {
            const frame = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            const match = /"sentAt":([\d.]+)/.exec(frame);
            if (!match) continue;
            figures.delays.push(now - Number(match[1]));
            if (++inThisRead > 1) figures.batched += 1;
          }
        });
        res.on('end', () => resolve(figures));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ bot_id: 'bench', user_id: 'x', stream: true, additional_messages: [] }));
  });
}

/** Section 3: per-event delay of SSE through the gateway against direct, never batched. */
export async function reportSse(report: Report, cast: ProxyTargets, settings: Settings): Promise<void> {
  const targets = [DIRECT, GATEWAY, GATEWAY_AGAIN].map((n) => cast.byName(n));
  const results = await interleave(targets, settings.rounds, async (t) => {
    const all: StreamFigures = { delays: [], batched: 0 };
    for (let i = 0; i < STREAMS_PER_SLICE; i++) {
      const f = await stream(t);
      all.delays.push(...f.delays);
      all.batched += f.batched;
    }
    return all;
  });
  report.note('## 3. SSE pass-through: per-event delay, origin write to client read');
  report.note();
  report.note(`Each slice is ${STREAMS_PER_SLICE} streams of ${EVENTS} events written ${GAP_MS} ms apart by the origin, each event stamped with its write time;`);
  report.note(`${settings.rounds} interleaved rounds. Percentiles over every event of a target; "added" is the median of per-round differences.`);
  report.note();
  const rows = targets.map((t) => {
    const rs = results.get(t.name) as StreamFigures[];
    const all = rs.flatMap((r) => r.delays);
    return [t.name, all.length, fixed(percentile(all, 50), 3), fixed(percentile(all, 99), 3), fixed(Math.max(...all), 3), rs.reduce((a, r) => a + r.batched, 0)];
  });
  report.table(['target', 'events', 'p50 ms', 'p99 ms', 'max ms', 'batched events'], rows);
  const p = (q: number) => (r: StreamFigures) => percentile(r.delays, q);
  const addedP99 = differences(results, GATEWAY, DIRECT, p(99));
  const batched = [...results.values()].flat().reduce((a, r) => a + r.batched, 0);
  report.note(`- **noise floor** (${GATEWAY_AGAIN} minus ${GATEWAY}): p50 ${delta(differences(results, GATEWAY_AGAIN, GATEWAY, p(50)), 'ms', 3)}, p99 ${delta(differences(results, GATEWAY_AGAIN, GATEWAY, p(99)), 'ms', 3)}`);
  report.note(`- gateway added per-event delay: p50 ${delta(differences(results, GATEWAY, DIRECT, p(50)), 'ms', 3)}, p99 **${delta(addedP99, 'ms', 3)}** (target ≤ 1 ms: ${verdict(addedP99?.median, '<=', 1)})`);
  report.note(`- events batched with another: **${batched}** (target 0: ${batched === 0 ? 'met' : 'NOT met'})`);
  report.note();
}
