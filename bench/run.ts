import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { exportSPKI, generateKeyPair } from 'jose';
import { createEmulator, generateEmulatorApp } from '../src/emulator/index.js';
import { measureLeaks } from './leaks.js';
import { measureScaleOut, reportScaleOut } from './scale-out.js';
import { callerJwt, freePort, timedGet, gatewayEnv, load, median, percentile, ROOT, startGateway, startProcess, hasTaskset, type LoadResult } from './lib.js';

/**
 * `npm run bench`: every figure of BENCH.md from one run, measured side by side, written to
 * bench/RESULTS.md. The proxy under test runs on CPU 1; the origin and the load generator on
 * CPU 0 (when taskset exists). Runs are interleaved A B C D A B C D, and medians reported.
 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const CONNECTIONS = 32;
const out: string[] = [];
const note = (line = '') => {
  out.push(line);
  process.stdout.write(`${line}\n`);
};

function startNginx(originPort: number): { port: number; stop(): void } | undefined {
  const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => spawnSync(p, ['-v']).status === 0);
  if (!nginx) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'csg-nginx-'));
  const port = 18000 + Math.floor(Math.random() * 1000);
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1; daemon on; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 4096; }
http { access_log off; upstream origin { server 127.0.0.1:${originPort}; keepalive 256; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }
`,
  );
  const cmd = hasTaskset() ? ['taskset', '-c', '1', nginx] : [nginx];
  execFileSync(cmd[0] as string, [...cmd.slice(1), '-c', join(dir, 'nginx.conf'), '-p', dir]);
  return { port, stop: () => void spawnSync(nginx, ['-c', join(dir, 'nginx.conf'), '-p', dir, '-s', 'stop']) };
}

async function hotPath(): Promise<Record<string, LoadResult>> {
  const caller = await generateKeyPair('RS256');
  const publicKey = await exportSPKI(caller.publicKey);
  const jwt = await callerJwt(caller.privateKey, 'bench-user');
  const origin = await startProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'origin.ts')], {}, 0);
  const originUrl = `http://127.0.0.1:${origin.port}`;
  const bare = await startProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'bare-proxy.ts')], { TARGET: originUrl }, 1);
  const gatewayPort = await freePort();
  const { privateKeyPem } = await generateEmulatorApp();
  const gateway = await startGateway({ ...gatewayEnv(originUrl, publicKey, gatewayPort, await freePort()), COZE_PRIVATE_KEY: privateKeyPem }, 1);
  const nginx = startNginx(origin.port);
  const path = '/v1/bots/bench';
  const targets: Array<{ name: string; url: string; pid?: number; headers?: Record<string, string> }> = [
    { name: 'direct', url: `${originUrl}${path}`, ...(origin.proc.pid ? { pid: origin.proc.pid } : {}) },
    { name: 'bare http-proxy', url: `http://127.0.0.1:${bare.port}${path}`, ...(bare.proc.pid ? { pid: bare.proc.pid } : {}) },
    { name: 'gateway', url: `http://127.0.0.1:${gatewayPort}${path}`, headers: { authorization: `Bearer ${jwt}` }, ...(gateway.proc.pid ? { pid: gateway.proc.pid } : {}) },
    ...(nginx ? [{ name: 'nginx', url: `http://127.0.0.1:${nginx.port}${path}` }] : []),
  ];
  const rounds: Record<string, LoadResult[]> = {};
  for (const t of targets) await load(t.url, { connections: CONNECTIONS, seconds: 2, ...(t.headers ? { headers: t.headers } : {}) }); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of targets) {
      const r = await load(t.url, { connections: CONNECTIONS, seconds: SECONDS, ...(t.headers ? { headers: t.headers } : {}), ...(t.pid ? { pid: t.pid } : {}) });
      (rounds[t.name] ??= []).push(r);
      process.stderr.write(`  round ${round + 1} ${t.name}: ${r.rps.toFixed(0)} req/s p50 ${r.p50} ms p99 ${r.p99} ms errors ${r.errors} non2xx ${r.non2xx}\n`);
    }
  }
  const fixedRate: Record<string, LoadResult> = {};
  for (const t of targets.filter((x) => x.name === 'direct' || x.name === 'gateway')) {
    fixedRate[t.name] = await load(t.url, { connections: 16, seconds: SECONDS, overallRate: 1000, ...(t.headers ? { headers: t.headers } : {}) });
  }
  const serial: Record<string, LoadResult> = {};
  for (const t of targets) serial[t.name] = await load(t.url, { connections: 1, seconds: 4, ...(t.headers ? { headers: t.headers } : {}) });

  const summary: Record<string, LoadResult> = {};
  note('## 1-2. Hot path: small JSON answers, keep-alive, 32 connections');
  note('');
  note(`Median of ${ROUNDS} interleaved rounds of ${SECONDS} s each (after a 2 s warm-up per target). "CPU/req" is the`);
  note('CPU time the process under test spent per request (from /proc), the most stable figure on a noisy machine.');
  note('');
  note('| path | req/s | p50 ms | p99 ms | CPU/req µs | errors | non-2xx | serial p50 ms (c=1) |');
  note('|---|---|---|---|---|---|---|---|');
  for (const t of targets) {
    const rs = rounds[t.name] as LoadResult[];
    const m: LoadResult = {
      rps: median(rs.map((r) => r.rps)),
      p50: median(rs.map((r) => r.p50)),
      p99: median(rs.map((r) => r.p99)),
      cpuPerRequestUs: median(rs.map((r) => r.cpuPerRequestUs)),
      errors: rs.reduce((a, r) => a + r.errors, 0),
      non2xx: rs.reduce((a, r) => a + r.non2xx, 0),
      requests: rs.reduce((a, r) => a + r.requests, 0),
    };
    summary[t.name] = m;
    note(`| ${t.name} | ${m.rps.toFixed(0)} | ${m.p50} | ${m.p99} | ${t.pid ? m.cpuPerRequestUs.toFixed(0) : 'n/a'} | ${m.errors} | ${m.non2xx} | ${serial[t.name]?.p50 ?? ''} |`);
  }
  const g = summary.gateway as LoadResult;
  const ratio = (a: number, b: number | undefined) => (b ? (a / b).toFixed(2) : 'n/a');
  note('');
  note(`- throughput gateway / bare http-proxy: **${ratio(g.rps, summary['bare http-proxy']?.rps)}x** (target 0.85x or better)`);
  note(`- throughput gateway / direct: **${ratio(g.rps, summary.direct?.rps)}x**`);
  note(`- throughput gateway / nginx: **${nginx ? `${ratio(g.rps, summary.nginx?.rps)}x` : 'n/a (nginx not installed: apt-get install -y nginx)'}**`);
  note(`- CPU per request gateway / bare http-proxy: **${ratio(g.cpuPerRequestUs, summary['bare http-proxy']?.cpuPerRequestUs)}x**`);
  const fd = fixedRate.direct as LoadResult;
  const fg = fixedRate.gateway as LoadResult;
  note(`- added latency at a fixed 1,000 req/s (16 connections): p50 ${fd.p50} -> ${fg.p50} ms (+${(fg.p50 - fd.p50).toFixed(2)} ms), p99 ${fd.p99} -> ${fg.p99} ms (+${(fg.p99 - fd.p99).toFixed(2)} ms); errors ${fd.errors + fg.errors}, non-2xx ${fd.non2xx + fg.non2xx}`);
  note('');

  await sse(originUrl, `http://127.0.0.1:${gatewayPort}`, jwt);
  await Promise.all([origin.stop(), bare.stop(), gateway.stop()]);
  nginx?.stop();
  return summary;
}

/** Per-event delay between the origin writing an event and the client reading it. */
async function sse(originUrl: string, gatewayUrl: string, jwt: string): Promise<void> {
  const run = (base: string, headers: Record<string, string>) =>
    new Promise<number[]>((resolve, reject) => {
      const delays: number[] = [];
      const req = http.request(`${base}/v3/chat?events=50&gap=20`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
        let buffered = '';
        res.on('data', (chunk: Buffer) => {
          const now = performance.timeOrigin + performance.now();
          buffered += chunk.toString();
          let end;
          while ((end = buffered.indexOf('\n\n')) !== -1) {
            const frame = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            const match = /"sentAt":([\d.]+)/.exec(frame);
            if (match) delays.push(now - Number(match[1]));
          }
        });
        res.on('end', () => resolve(delays));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ bot_id: 'bench', user_id: 'x', stream: true, additional_messages: [] }));
    });
  const direct: number[] = [];
  const gateway: number[] = [];
  for (let i = 0; i < 5; i++) {
    direct.push(...(await run(originUrl, {})));
    gateway.push(...(await run(gatewayUrl, { authorization: `Bearer ${jwt}` })));
  }
  note('## 3. SSE pass-through: per-event delay, origin write to client read');
  note('');
  note('5 streams of 50 events, 20 ms apart, alternating direct and through the gateway.');
  note('');
  note('| path | events | p50 ms | p99 ms | max ms |');
  note('|---|---|---|---|---|');
  for (const [name, d] of [['direct', direct], ['gateway', gateway]] as const) {
    note(`| ${name} | ${d.length} | ${percentile(d, 50).toFixed(3)} | ${percentile(d, 99).toFixed(3)} | ${Math.max(...d).toFixed(3)} |`);
  }
  note('');
  note(`- added per-event delay: p50 +${(percentile(gateway, 50) - percentile(direct, 50)).toFixed(3)} ms, p99 +${(percentile(gateway, 99) - percentile(direct, 99)).toFixed(3)} ms (goal: within 1 ms at p99); every event arrived on its own, none batched: ${gateway.length === direct.length}`);
  note('');
}

/** Cold sessions against the real emulator, which counts the exchanges it served. */
async function stampede(): Promise<{ one: number; many: number }> {
  const { app, privateKeyPem } = await generateEmulatorApp();
  const emulator = await createEmulator({ apps: [app] });
  const caller = await generateKeyPair('RS256');
  const port = await freePort();
  const gateway = await startGateway({ ...gatewayEnv(emulator.url, await exportSPKI(caller.publicKey), port, await freePort(), { COZE_KEY_ID: app.keys[0]?.kid ?? '', LOG_LEVEL: 'warn' }), COZE_PRIVATE_KEY: privateKeyPem }, 1);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1000 });
  const get = (jwt: string) => timedGet(port, jwt, agent);

  const one = await callerJwt(caller.privateKey, 'stampede-one');
  const first = await Promise.all(Array.from({ length: 1000 }, () => get(one)));
  const oneExchanges = emulator.stats.exchanges;
  note('## 4. Mint stampede (the real emulator counts the token exchanges)');
  note('');
  note(`- 1,000 concurrent first requests for one new session: **${oneExchanges} exchange(s)**; ${first.filter((r) => r.status === 200).length} answered 200; p50 ${percentile(first.map((r) => r.ms), 50).toFixed(1)} ms, p99 of these first requests ${percentile(first.map((r) => r.ms), 99).toFixed(1)} ms`);

  emulator.reset();
  const jwts = await Promise.all(Array.from({ length: 1000 }, (_, i) => callerJwt(caller.privateKey, `stampede-${i}`)));
  const firstTimes: number[] = [];
  let ok = 0;
  // Interleaved: round r sends request r of every session, 1,000 at a time.
  for (let r = 0; r < 10; r++) {
    const results = await Promise.all(jwts.map((jwt) => get(jwt)));
    ok += results.filter((x) => x.status === 200).length;
    if (r === 0) firstTimes.push(...results.map((x) => x.ms));
  }
  const manyExchanges = emulator.stats.exchanges;
  note(`- 10,000 requests over 1,000 new sessions (10 waves of 1,000): **${manyExchanges} exchanges**; ${ok} answered 200; p99 of each session's first request ${percentile(firstTimes, 99).toFixed(1)} ms`);
  note('');
  agent.destroy();
  await gateway.stop();
  await emulator.close();
  return { one: oneExchanges, many: manyExchanges };
}

function childJson(script: string, extraNodeArgs: string[] = []): Record<string, unknown> {
  const cmd = hasTaskset() ? ['taskset', '-c', '1', process.execPath] : [process.execPath];
  const text = execFileSync(cmd[0] as string, [...cmd.slice(1), ...extraNodeArgs, '--import', 'tsx', join(ROOT, 'bench', script)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  return JSON.parse(text.trim().split('\n').at(-1) as string) as Record<string, unknown>;
}

async function main(): Promise<void> {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  if (hasTaskset()) execFileSync('taskset', ['-cp', '0', String(process.pid)], { stdio: 'ignore' });
  note('# Benchmark results');
  note('');
  note(`Machine: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.`);
  note(`Command: \`npm run bench\` (BENCH_ROUNDS=${ROUNDS}, BENCH_SECONDS=${SECONDS}). Process under test on CPU 1, origin and load generator (autocannon) on CPU 0${hasTaskset() ? '' : ' (taskset missing: not pinned)'}.`);
  note('The machine is shared and noisy: compare ratios measured side by side in this run, not absolute figures.');
  note('');
  await hotPath();
  await stampede();
  const memory = childJson('memory.ts', ['--expose-gc']);
  note('## 5. Token cache memory at 100,000 sessions');
  note('');
  note(`- heap per cached session: **${memory.heapPerEntry} bytes**; RSS per cached session: **${memory.rssPerEntry} bytes** (goal: under 1 KiB)`);
  note(`- ${memory.sessions} sessions, heap +${memory.heapDeltaMiB} MiB, RSS +${memory.rssDeltaMiB} MiB`);
  note('');
  const jwt = childJson('jwt-verify.ts');
  note('## 6. Caller-JWT verification cost (one core)');
  note('');
  note('| algorithm | jose verify, 1 in flight (ops/s) | jose verify, 32 in flight (ops/s) | gateway jwt-source, same token again (ops/s) |');
  note('|---|---|---|---|');
  for (const alg of ['RS256', 'ES256', 'HS256']) {
    const r = jwt[alg] as Record<string, number>;
    note(`| ${alg} | ${r.serial} | ${r.parallel} | ${r.cached} |`);
  }
  note('');
  const leaks = await measureLeaks();
  note('## 7. Memory after aborted streams and uploads (issue 8)');
  note('');
  note('The gateway as its own process; each round is 2,000 chat streams cut after their headers and 2,000 uploads cut');
  note('after 64 KiB of a declared 1 MiB. Read from the gateway\'s /metrics after a full GC.');
  note('');
  note('| after | heap MiB | external MiB | RSS MiB | open handles | active streams | streams open at Coze |');
  note('|---|---|---|---|---|---|---|');
  const row = (label: string, r: { heapMiB: number; externalMiB: number; rssMiB: number; handles: number }, active: number, open: number) =>
    note(`| ${label} | ${r.heapMiB.toFixed(1)} | ${r.externalMiB.toFixed(1)} | ${r.rssMiB.toFixed(1)} | ${r.handles} | ${active} | ${open} |`);
  row('warm-up (400 aborts)', leaks.baseline, 0, 0);
  for (const r of leaks.rounds) row(`${r.aborted.toLocaleString('en-US')} aborts`, r, r.activeStreams, r.emulatorOpenStreams);
  const first = leaks.rounds[0];
  const last = leaks.rounds.at(-1);
  if (first && last && last !== first) {
    const perAbort = (mib: number) => ((mib * 2 ** 20) / (last.aborted - first.aborted)).toFixed(0);
    note('');
    note(`- growth per aborted request from the first round to the last (${(last.aborted - first.aborted).toLocaleString('en-US')} aborts): heap **${perAbort(last.heapMiB - first.heapMiB)} bytes**, RSS **${perAbort(last.rssMiB - first.rssMiB)} bytes**`);
    note('- before the fix of issue 8, an aborted upload held its request for 300 s (about 18 KiB each)');
  }
  note('');
  reportScaleOut(await measureScaleOut(SECONDS, ROUNDS), note);
  note('');
  writeFileSync(join(ROOT, 'bench', 'RESULTS.md'), `${out.join('\n')}\n`);
  process.stdout.write('\nwrote bench/RESULTS.md\n');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
