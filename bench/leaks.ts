import http from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { exportSPKI, generateKeyPair } from 'jose';
import { createEmulator, generateEmulatorApp } from '../src/emulator/index.js';
import { abortedStream, abortedUpload, inBatches } from '../test/helpers/aborts.js';
import { callerJwt, freePort, gatewayEnv, ROOT, startGateway } from './lib.js';
import type { Report } from './report.js';

export interface LeakFigures {
  rounds: Array<{ aborted: number; heapMiB: number; rssMiB: number; externalMiB: number; handles: number; activeStreams: number; emulatorOpenStreams: number }>;
  baseline: { heapMiB: number; rssMiB: number; externalMiB: number; handles: number };
}

const ROUND = 2000;
const MiB = 2 ** 20;

/**
 * Memory after clients leave half-way (issue 8): the gateway runs as its own process against
 * the emulator, which holds every stream open (paced) so that each abort really cuts a live
 * stream. Each round is 2,000 aborted chat streams and 2,000 aborted uploads; after each, the
 * gateway runs a full GC (SIGUSR2, see gc-on-signal.mjs) and its own /metrics gives heap, RSS,
 * open handles and active streams.
 */
export async function measureLeaks(rounds = 3): Promise<LeakFigures> {
  const { app, privateKeyPem } = await generateEmulatorApp();
  const emulator = await createEmulator({ apps: [app] });
  const caller = await generateKeyPair('RS256');
  const port = await freePort();
  const adminPort = await freePort();
  const env = gatewayEnv(emulator.url, await exportSPKI(caller.publicKey), port, adminPort, { COZE_KEY_ID: app.keys[0]?.kid ?? '', COZE_PRIVATE_KEY: privateKeyPem, LOG_LEVEL: 'warn' });
  const gateway = await startGateway(env, 1, ['--expose-gc', '--import', pathToFileURL(join(ROOT, 'bench', 'gc-on-signal.mjs')).href]);
  const agent = new http.Agent({ keepAlive: false, maxSockets: 100 });
  const target = { port, agent, authorization: `Bearer ${await callerJwt(caller.privateKey, 'leaky')}` };

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const read = async () => {
    // Twice: the first collection frees what the second one finds unreachable (weak maps, finalizers).
    gateway.proc.kill('SIGUSR2');
    await sleep(100);
    gateway.proc.kill('SIGUSR2');
    await sleep(200);
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const metric = (name: string) => Number(new RegExp(`^coze_gateway_${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    return {
      heapMiB: metric('nodejs_heap_size_used_bytes') / MiB,
      rssMiB: metric('process_resident_memory_bytes') / MiB,
      externalMiB: metric('nodejs_external_memory_bytes') / MiB,
      handles: metric('nodejs_active_handles_total'),
      activeStreams: metric('active_streams'),
    };
  };
  /** Waits until no stream is active on either side and the handle count stops moving. */
  const settle = async () => {
    let previous = await read();
    for (let i = 0; i < 100; i++) {
      const now = await read();
      if (now.activeStreams === 0 && emulator.openStreams === 0 && now.handles === previous.handles) return now;
      previous = now;
    }
    return previous;
  };

  try {
    emulator.pace();
    // Warm-up: JIT, pools and lazily built caches are not leaks.
    await inBatches(200, () => abortedStream(target));
    await inBatches(200, () => abortedUpload(target));
    const base = await settle();
    const figures: LeakFigures = { baseline: { heapMiB: base.heapMiB, rssMiB: base.rssMiB, externalMiB: base.externalMiB, handles: base.handles }, rounds: [] };
    for (let round = 1; round <= rounds; round++) {
      await inBatches(ROUND, () => abortedStream(target));
      await inBatches(ROUND, () => abortedUpload(target));
      const after = await settle();
      figures.rounds.push({ aborted: round * ROUND * 2, ...after, emulatorOpenStreams: emulator.openStreams });
      emulator.reset();
    }
    return figures;
  } finally {
    emulator.unpace();
    agent.destroy();
    await gateway.stop();
    await emulator.close();
  }
}

/** Section 7: memory and handles after rounds of aborted streams and uploads (issue 8). */
export async function reportLeaks(report: Report): Promise<void> {
  const leaks = await measureLeaks();
  report.note('## 7. Memory after aborted streams and uploads');
  report.note();
  report.note('The gateway as its own process; each round is 2,000 chat streams cut after their headers and 2,000 uploads cut');
  report.note("after 64 KiB of a declared 1 MiB. Read from the gateway's /metrics after a full GC. These are counts and levels,");
  report.note('not speeds: the noise floor is how far the levels move between rounds once warm.');
  report.note();
  const row = (label: string, r: { heapMiB: number; externalMiB: number; rssMiB: number; handles: number }, active: number, open: number) =>
    [label, r.heapMiB.toFixed(1), r.externalMiB.toFixed(1), r.rssMiB.toFixed(1), r.handles, active, open];
  report.table(
    ['after', 'heap MiB', 'external MiB', 'RSS MiB', 'open handles', 'active streams', 'streams open at Coze'],
    [row('warm-up (400 aborts)', leaks.baseline, 0, 0), ...leaks.rounds.map((r) => row(`${r.aborted.toLocaleString('en-US')} aborts`, r, r.activeStreams, r.emulatorOpenStreams))],
  );
  const first = leaks.rounds[0];
  const last = leaks.rounds.at(-1);
  if (first && last && last !== first) {
    const perAbort = (mib: number) => ((mib * 2 ** 20) / (last.aborted - first.aborted)).toFixed(0);
    report.note(`- growth per aborted request from the first round to the last (${(last.aborted - first.aborted).toLocaleString('en-US')} aborts): heap **${perAbort(last.heapMiB - first.heapMiB)} bytes**, RSS **${perAbort(last.rssMiB - first.rssMiB)} bytes**`);
    report.note(`- streams left open at Coze after the last round: **${last.emulatorOpenStreams}** (target 0)`);
    report.note();
  }
}
