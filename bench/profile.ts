import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair } from 'jose';
import { generateEmulatorApp } from '../src/emulator/index.js';
import { callerJwt, freePort, gatewayEnv, load, ROOT, startGateway, startProcess } from './lib.js';

/**
 * `npm run bench:profile`: the hot path under load with `node --cpu-prof`, then the functions
 * that took the most self time, grouped by file. Writes the .cpuprofile under bench/.tmp/profile/.
 */
// Its own folder: bench/.tmp also holds the generator, its Go cache and bench:compare's builds.
const DIR = join(ROOT, 'bench', '.tmp', 'profile');
rmSync(DIR, { recursive: true, force: true });
const caller = await generateKeyPair('RS256');
const jwt = await callerJwt(caller.privateKey, 'u');
const origin = await startProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'origin.ts')], {}, 0);
const port = await freePort();
const { privateKeyPem } = await generateEmulatorApp();
const env = gatewayEnv(`http://127.0.0.1:${origin.port}`, await exportSPKI(caller.publicKey), port, await freePort(), { COZE_PRIVATE_KEY: privateKeyPem, SHUTDOWN_GRACE_SECONDS: '1' });
const gateway = await startGateway(env, 1, ['--cpu-prof', `--cpu-prof-dir=${DIR}`]);
const r = await load(`http://127.0.0.1:${port}/v1/bots/bench`, { connections: 32, seconds: 8, headers: { authorization: `Bearer ${jwt}` }, ...(gateway.proc.pid ? { pid: gateway.proc.pid } : {}) });
console.log(`gateway: ${r.rps.toFixed(0)} req/s, ${r.cpuPerRequestUs.toFixed(0)} µs CPU/request`);
// SIGTERM, not SIGKILL: node writes the .cpuprofile only on a clean exit.
await new Promise<void>((resolve) => {
  gateway.proc.once('exit', () => resolve());
  gateway.proc.kill('SIGTERM');
});
await origin.stop();

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount: number }
const file = readdirSync(DIR).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error('no profile written');
const profile = JSON.parse(readFileSync(join(DIR, file), 'utf8')) as { nodes: Node[] };
const total = profile.nodes.reduce((a, n) => a + n.hitCount, 0);
const byFn = new Map<string, number>();
const byFile = new Map<string, number>();
for (const n of profile.nodes) {
  const where = n.callFrame.url.replace(/^.*\/(node_modules\/[^/]+|dist|node:)/, '$1') || '(native)';
  const key = `${n.callFrame.functionName || '(anonymous)'} ${where}:${n.callFrame.lineNumber}`;
  byFn.set(key, (byFn.get(key) ?? 0) + n.hitCount);
  const group = where.startsWith('node_modules/') ? where.split('/').slice(0, 2).join('/') : where.startsWith('dist') ? where : where.startsWith('node:') ? where.split('/')[0] ?? where : where;
  byFile.set(group, (byFile.get(group) ?? 0) + n.hitCount);
}
const top = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`);
console.log(`\nself time by file (${total} samples):\n${top(byFile, 25).join('\n')}`);
console.log(`\nself time by function:\n${top(byFn, 30).join('\n')}`);
