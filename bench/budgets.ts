import { generateEmulatorApp } from '../src/emulator/index.js';
import type { Settings } from './hot-path.js';
import { freePort, gatewayEnv, interleave, load, median, ratios, startGateway, type Child, type LoadResult } from './lib.js';
import { fixed, ratio, type Report } from './report.js';
import { startOrigin } from './targets.js';

const CONNECTIONS = 32;
const WARM_UP_SECONDS = 1;
const OFF = 'budgets off';
const OFF_AGAIN = "budgets off (A')";
const ON = 'budgets on';
/** Budgets so large they never refuse: what is measured is the check, not a 429. */
const ON_ENV = { BUDGET_TOKENS_PER_DAY: '1000000000000', BUDGET_TOKENS_PER_MONTH: '1000000000000', BUDGET_REQUESTS_PER_DAY: '1000000000000' };
/** Every gateway has the same time zone, so on and off differ by the budgets alone. */
const COMMON_ENV = { BUDGET_TIME_ZONE: 'Asia/Shanghai' };
/** A small JSON answer that reports no usage (the request is counted), and a completed chat whose usage is read and counted. */
const PATHS = [
  { label: 'GET /v1/bots/bench (request counted)', path: '/v1/bots/bench' },
  { label: 'GET /v3/chat/retrieve (usage read and counted)', path: '/v3/chat/retrieve?conversation_id=c&chat_id=x' },
] as const;

interface Cast {
  targets: Array<{ name: string; port: number; pids: number[] }>;
  jwt: string;
  stop(): Promise<void>;
}

/** The origin on CPU 0, three gateways on CPU 1: budgets off twice (the noise floor) and on. */
async function startCast(): Promise<Cast> {
  const { origin, publicKey, jwt } = await startOrigin();
  const children: Child[] = [origin];
  const { privateKeyPem } = await generateEmulatorApp();
  const targets: Cast['targets'] = [];
  for (const [name, extra] of [[OFF, COMMON_ENV], [OFF_AGAIN, COMMON_ENV], [ON, { ...COMMON_ENV, ...ON_ENV }]] as const) {
    const port = await freePort();
    const gateway = await startGateway({ ...gatewayEnv(`http://127.0.0.1:${origin.port}`, publicKey, port, await freePort(), extra), COZE_PRIVATE_KEY: privateKeyPem, LOG_LEVEL: 'warn' }, 1);
    children.push(gateway);
    targets.push({ name, port, pids: gateway.proc.pid ? [gateway.proc.pid] : [] });
  }
  return { targets, jwt, stop: async () => void (await Promise.all(children.map((c) => c.stop()))) };
}

/**
 * The cost of budgets on the hot path (issue 18): the same build with budgets off and on, in
 * the same run, interleaved, on a path that only counts the request and on one whose answer's
 * usage is read and counted. Usage is counted either way; budgets add the check at admission.
 */
export async function reportBudgets(report: Report, settings: Settings): Promise<void> {
  const cast = await startCast();
  try {
    report.note('## 9. Budgets: the hot path with budgets on, against budgets off');
    report.note();
    report.note(`Three gateways of this build, on CPU 1: budgets off twice (the noise floor, A and A') and on (every budget set, too large to`);
    report.note(`refuse), ${CONNECTIONS} keep-alive connections, ${settings.rounds} interleaved rounds of ${settings.seconds} s per target and path. Usage is counted in`);
    report.note('every gateway; "on" adds the budget check at admission. Medians; ratios are per-round, with their range.');
    report.note();
    const rows: Array<Array<string | number>> = [];
    for (const { label, path } of PATHS) {
      const run = (t: Cast['targets'][number], seconds: number, counted: boolean) =>
        load(`http://127.0.0.1:${t.port}${path}`, { connections: CONNECTIONS, seconds, headers: { authorization: `Bearer ${cast.jwt}` }, ...(counted ? { pid: t.pids } : {}) });
      const results: Map<string, LoadResult[]> = await interleave(
        cast.targets,
        settings.rounds,
        async (t, round) => {
          const r = await run(t, settings.seconds, true);
          process.stderr.write(`  budgets ${path} round ${round + 1} ${t.name}: ${r.rps.toFixed(0)} req/s, ${r.cpuPerRequestUs.toFixed(0)} µs CPU/req, errors ${r.errors}, non-2xx ${r.non2xx}\n`);
          return r;
        },
        (t) => run(t, WARM_UP_SECONDS, false),
      );
      for (const t of cast.targets) {
        const rs = results.get(t.name) as LoadResult[];
        rows.push([label, t.name, fixed(median(rs.map((r) => r.rps))), fixed(median(rs.map((r) => r.cpuPerRequestUs))), fixed(median(rs.map((r) => r.p99))), rs.reduce((a, r) => a + r.errors + r.non2xx, 0)]);
      }
      const rps = (r: LoadResult) => r.rps;
      const cpu = (r: LoadResult) => r.cpuPerRequestUs;
      report.note(`- ${label}: on / off, req/s **${ratio(ratios(results, ON, OFF, rps))}**, CPU/req **${ratio(ratios(results, ON, OFF, cpu))}**; noise floor (A' / A) req/s ${ratio(ratios(results, OFF_AGAIN, OFF, rps))}, CPU/req ${ratio(ratios(results, OFF_AGAIN, OFF, cpu))}`);
    }
    report.note();
    report.table(['path', 'target', 'req/s', 'CPU µs/req', 'p99 ms', 'errors + non-2xx'], rows);
  } finally {
    await cast.stop();
  }
}
