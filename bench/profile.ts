import { readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { generateEmulatorApp } from '../src/emulator/index.js';
import { load, startProcess } from './lib.js';

/**
 * `npm run bench:profile`: the hot path under load with `node --cpu-prof`, then the functions
 * that took the most self time, grouped by file. Writes the .cpuprofile under bench/.tmp/.
 */
const ROOT = new URL('..', import.meta.url).pathname;
const DIR = join(ROOT, 'bench', '.tmp');
rmSync(DIR, { recursive: true, force: true });
const free = async () => {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return p;
};
const caller = await generateKeyPair('RS256');
const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject('u').setIssuer('https://bench-idp').setAudience('bench').setExpirationTime('1h').sign(caller.privateKey);
const origin = await startProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'origin.ts')], {}, 0);
const port = await free();
const { privateKeyPem } = await generateEmulatorApp();
const gateway = await startProcess(
  process.execPath,
  ['--cpu-prof', `--cpu-prof-dir=${DIR}`, join(ROOT, 'dist', 'main.js'), 'serve'],
  {
    COZE_BASE_URL: `http://127.0.0.1:${origin.port}`, COZE_APP_ID: '1', COZE_KEY_ID: 'k', COZE_PRIVATE_KEY: privateKeyPem,
    IDENTITY_JWT_PUBLIC_KEY: await exportSPKI(caller.publicKey), IDENTITY_JWT_ISSUER: 'https://bench-idp', IDENTITY_JWT_AUDIENCE: 'bench',
    ALLOWED_BOT_IDS: 'bench', RATE_LIMIT_RPM: '100000000', PORT: String(port), HOST: '127.0.0.1', ADMIN_PORT: String(await free()), ADMIN_HOST: '127.0.0.1', SHUTDOWN_GRACE_SECONDS: '1',
  },
  1,
  port,
);
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
