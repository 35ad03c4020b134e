import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { freePort, MAIN, runCli, spawnServe, TSX, type ServeProcess } from '../helpers/cli-process.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The README's "Try the production setup locally" commands, continuation lines joined. */
function recipe(): string[] {
  const section = README.slice(README.indexOf('## Try the production setup locally'));
  const block = /```sh\n([\s\S]*?)```/.exec(section.slice(0, section.indexOf('\n## ', 3)))?.[1];
  assert.ok(block, 'the README has the recipe');
  return block
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

/** Shell words, as sh splits them: single and double quotes, no expansion but $PWD. */
function words(line: string, pwd: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)) out.push((m[1] ?? m[2] ?? (m[3] as string)).replace(/\$PWD/g, pwd));
  return out;
}

/**
 * Issue 16: the README's production recipe works as written. Each command of the README block
 * runs here as the README says: `node dist/main.js …` is the same CLI run from src through tsx,
 * the emulator's port 8081 becomes a free port, and curl's request is made with fetch.
 */
describe('production-recipe: the README\'s "try the production setup locally" works', () => {
  const dir = mkdtempSync(join(tmpdir(), 'csg-recipe-'));
  const children: ChildProcess[] = [];
  let gateway: ServeProcess | undefined;
  after(() => {
    gateway?.kill();
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('generate a key, start the emulator with it, check-config --mint, serve from environment variables only, one curl', { timeout: 120_000 }, async () => {
    const emulatorPort = await freePort();
    const lines = recipe().map((l) => l.replaceAll('8081', String(emulatorPort)));
    const env: Record<string, string> = {};
    let served = false;
    let curled = false;
    const kinds = lines.map((l) => l.split(' ').slice(0, 3).join(' '));
    assert.deepEqual(
      [kinds.findIndex((k) => k.startsWith('openssl genpkey')), kinds.findIndex((k) => k === 'node dist/main.js emulator'), kinds.findIndex((k) => k === 'node dist/main.js check-config'), kinds.findIndex((k) => k === 'node dist/main.js serve'), kinds.findIndex((k) => k.startsWith('curl'))].every((i, n, all) => i >= 0 && (n === 0 || i > (all[n - 1] as number))),
      true,
      `the recipe generates a key, starts the emulator, checks, serves and curls, in that order:\n${lines.join('\n')}`,
    );

    for (const line of lines) {
      const [command, ...args] = words(line.replace(/\s*&$/, ''), dir);
      if (line === 'npm ci && npm run build') continue; // the test runs the sources through tsx
      if (command === 'openssl') {
        if (spawnSync('openssl', ['version']).status === 0) execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
        else writeKeyWithNode(args); // a machine with only Node: the same two PEM files
      } else if (command === 'export') {
        for (const assignment of args) {
          const eq = assignment.indexOf('=');
          env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
        }
      } else if (command === 'node' && args[1] === 'emulator') {
        const emulator = spawn(process.execPath, ['--import', TSX, MAIN, ...args.slice(1)], { cwd: dir, env: { PATH: process.env.PATH ?? '' } });
        let stderr = '';
        emulator.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        children.push(emulator);
        await new Promise<void>((resolve, reject) => {
          let out = '';
          emulator.stdout.on('data', (c: Buffer) => {
            out += c.toString();
            if (out.includes('Coze emulator listening')) resolve();
          });
          emulator.once('exit', (code) => reject(new Error(`the emulator exited ${code}: ${out}${stderr}`)));
        });
      } else if (command === 'node' && args[1] === 'check-config') {
        const res = await runCli(args.slice(1), env);
        assert.equal(res.code, 0, res.stdout + res.stderr);
        assert.match(res.stdout, /minted a token for session_name "smoke-test": expires at /);
      } else if (command === 'node' && args[1] === 'serve') {
        gateway = await spawnServe(env, args.slice(1));
        await gateway.ready();
        served = true;
      } else if (command === 'curl') {
        assert.ok(gateway, 'the gateway runs before the curl');
        const url = new URL(args.find((a) => a.startsWith('http')) as string);
        assert.equal(url.port, '8080', 'the README calls the default port');
        const headers: Record<string, string> = {};
        args.forEach((a, i) => {
          if (a === '-H') {
            const [name, ...value] = (args[i + 1] as string).split(':');
            headers[name as string] = value.join(':').trim();
          }
        });
        const body = args[args.indexOf('-d') + 1];
        const res = await fetch(`http://127.0.0.1:${gateway.port}${url.pathname}`, { method: 'POST', headers, body });
        const json = (await res.json()) as { code: number; data?: { id?: string } };
        assert.equal(res.status, 200, JSON.stringify(json));
        assert.equal(json.code, 0);
        assert.match(json.data?.id ?? '', /\w+/, 'a conversation was created');
        curled = true;
      } else {
        assert.fail(`a recipe line this test does not know how to run: ${line}`);
      }
    }
    assert.ok(served && curled);
    assert.deepEqual(Object.keys(env).sort(), ['COZE_APP_ID', 'COZE_AUDIENCE', 'COZE_BASE_URL', 'COZE_KEY_ID', 'COZE_PRIVATE_KEY_FILE', 'COZE_WS_BASE_URL', 'IDENTITY_TRUSTED_HEADER'], 'environment variables only');
  });

  /** `openssl genpkey … -out private_key.pem` and `openssl pkey … -pubout -out public_key.pem`. */
  function writeKeyWithNode(args: string[]): void {
    const out = join(dir, args[args.indexOf('-out') + 1] as string);
    if (args[0] === 'genpkey') {
      writeFileSync(out, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    } else {
      const input = readFileSync(join(dir, args[args.indexOf('-in') + 1] as string), 'utf8');
      writeFileSync(out, createPublicKey(input).export({ type: 'spki', format: 'pem' }));
    }
  }
});
