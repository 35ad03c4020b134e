import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { freePort } from '../helpers/cli-process.js';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const DOCKERFILE = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile lines, with continuations joined and comments dropped. */
function parse(text: string): Instruction[] {
  const joined = text.replace(/\\\n\s*/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const space = l.indexOf(' ');
      return { op: l.slice(0, space).toUpperCase(), args: l.slice(space + 1).trim() };
    });
}

const instructions = parse(DOCKERFILE);
const stages = instructions.filter((i) => i.op === 'FROM');
const runtimeStart = instructions.lastIndexOf(stages.at(-1) as Instruction);
const runtime = instructions.slice(runtimeStart);

describe('Dockerfile', () => {
  it('is multi-stage and runs production dependencies only, as a numeric non-root user', () => {
    assert.ok(stages.length >= 2, 'multi-stage');
    assert.ok(instructions.some((i) => i.op === 'RUN' && /npm ci\b/.test(i.args) && !/--omit=dev/.test(i.args)), 'the build stage uses npm ci');
    assert.ok(instructions.some((i) => i.op === 'RUN' && /npm run build/.test(i.args)), 'a build step');
    assert.ok(runtime.some((i) => i.op === 'RUN' && /npm ci --omit=dev/.test(i.args)), 'production dependencies only at run time');
    const user = runtime.find((i) => i.op === 'USER');
    assert.match(user?.args ?? '', /^[1-9]\d*(:\d+)?$/, 'a numeric non-root uid');
  });

  it('dockerfile-healthcheck: a HEALTHCHECK that needs no curl runs the gateway\'s own healthcheck command (it follows admin.port from every config layer, not ADMIN_PORT only)', () => {
    const healthcheck = runtime.find((i) => i.op === 'HEALTHCHECK');
    assert.ok(healthcheck, 'the runtime stage has a HEALTHCHECK');
    assert.match(healthcheck.args, /--interval=\d+s --timeout=(\d+)s --start-period=\d+s --retries=\d+\s+CMD \[/);
    assert.ok(Number(/--timeout=(\d+)s/.exec(healthcheck.args)?.[1]) >= 3, 'above the command\'s own 2 s probe timeout, so the command reports why');
    assert.deepEqual(healthCommand(), [...(JSON.parse(runtime.find((i) => i.op === 'ENTRYPOINT')?.args ?? '[]') as string[]), 'healthcheck'], 'node, not curl: the image has no curl');
  });

  it('npm-pack-builds: npm pack builds dist first, so the package holds what its bin names', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; files: string[]; scripts: Record<string, string> };
    assert.match(pkg.scripts.prepack ?? '', /npm run build/, 'prepack builds (a fresh clone has no dist)');
    for (const target of Object.values(pkg.bin)) assert.ok(pkg.files.some((f) => target.startsWith(`${f}/`)), `${target} is in files`);
  });

  it('starts node directly in exec form, exposes both ports and carries OCI labels', () => {
    assert.equal(runtime.find((i) => i.op === 'ENTRYPOINT')?.args, '["node", "dist/main.js"]');
    assert.equal(runtime.find((i) => i.op === 'CMD')?.args, '["serve"]');
    assert.equal(runtime.find((i) => i.op === 'EXPOSE')?.args, '8080 9091');
    const labels = runtime.filter((i) => i.op === 'LABEL').map((i) => i.args).join(' ');
    for (const label of ['title', 'description', 'source', 'licenses', 'version']) assert.ok(labels.includes(`org.opencontainers.image.${label}=`), label);
  });

  it('its build and start steps work as plain commands, the entrypoint serves /healthz, and the HEALTHCHECK sees it', { timeout: 600_000 }, async () => {
    const work = mkdtempSync(join(tmpdir(), 'csg-docker-'));
    try {
      await buildAndRun(work);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

/** The HEALTHCHECK's exec-form command. */
function healthCommand(): string[] {
  const args = runtime.find((i) => i.op === 'HEALTHCHECK')?.args ?? '';
  return JSON.parse(args.slice(args.indexOf('CMD ') + 4)) as string[];
}

/**
 * npm runs with a cache of its own inside `work`: `npm cache clean --force` in the Dockerfile
 * must never touch the real ~/.npm (issue 16 item 9), and a concurrent npm must not break this
 * test. The cache is seeded with only what package-lock.json needs, read from the developer's
 * cache (never the whole of it, which may hold gigabytes); whatever is missing there comes from
 * the registry (prefer-offline), into the temporary cache too.
 */
function npmEnv(work: string): Record<string, string> {
  const cache = join(work, 'npm-cache');
  const own = execFileSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).trim();
  const registry = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8' }).trim().replace(/\/?$/, '/');
  if (own && existsSync(join(own, '_cacache'))) seedCache(join(own, '_cacache'), join(cache, '_cacache'), registry);
  return { npm_config_cache: cache, npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
}

/**
 * Copies the cache entries `npm ci` reads for this lockfile: each package's metadata document
 * and tarball (the lockfile names no tarball URLs, so npm asks the registry's document first).
 * cacache's layout: an index bucket per key at index-v5/<sha256(key)>, one JSON entry a line
 * after a tab, pointing at content-v2/<algorithm>/<digest in hex>.
 */
function seedCache(from: string, to: string, registry: string): void {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { name?: string; version?: string; resolved?: string; link?: boolean }> };
  const urls = new Set<string>();
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path || entry.link || !entry.version) continue;
    const name = entry.name ?? path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    urls.add(`${registry}${name.replace('/', '%2f')}`);
    urls.add(entry.resolved ?? `${registry}${name}/-/${name.split('/').pop() as string}-${entry.version}.tgz`);
  }
  const copy = (rel: string) => {
    if (!existsSync(join(from, rel)) || existsSync(join(to, rel))) return;
    mkdirSync(dirname(join(to, rel)), { recursive: true });
    cpSync(join(from, rel), join(to, rel));
  };
  for (const url of urls) {
    const key = `make-fetch-happen:request-cache:${url}`;
    const hash = createHash('sha256').update(key).digest('hex');
    const bucket = join('index-v5', hash.slice(0, 2), hash.slice(2, 4), hash.slice(4));
    if (!existsSync(join(from, bucket))) continue;
    copy(bucket);
    for (const line of readFileSync(join(from, bucket), 'utf8').split('\n')) {
      const entry = parseEntry(line.slice(line.indexOf('\t') + 1));
      if (entry?.key !== key || !entry.integrity) continue;
      for (const integrity of entry.integrity.split(/\s+/)) {
        const [algorithm, digest] = integrity.split('-', 2) as [string, string | undefined];
        if (!digest) continue;
        const hex = Buffer.from(digest, 'base64').toString('hex');
        copy(join('content-v2', algorithm, hex.slice(0, 2), hex.slice(2, 4), hex.slice(4)));
      }
    }
  }
}

/** One index line's entry; a line cut short by an interrupted write is skipped, as cacache does. */
function parseEntry(json: string): { key?: string; integrity?: string } | undefined {
  try {
    return JSON.parse(json) as { key?: string; integrity?: string };
  } catch {
    return undefined;
  }
}

async function buildAndRun(work: string): Promise<void> {
  const npm = npmEnv(work);
  const stageDirs = new Map<string, string>();
  let dir = '';
  let env: Record<string, string> = {};
  let entrypoint: string[] = [];
  let cmd: string[] = [];
  const args = new Map<string, string>();
  for (const [index, ins] of instructions.entries()) {
    if (ins.op === 'FROM') {
      const name = /\bAS (\S+)/i.exec(ins.args)?.[1] ?? `stage${index}`;
      dir = join(work, name);
      mkdirSync(dir, { recursive: true });
      stageDirs.set(name, dir);
      env = {};
    } else if (ins.op === 'WORKDIR') {
      // Every stage works in its own folder standing in for the image's WORKDIR.
    } else if (ins.op === 'ARG') {
      const [k, v] = ins.args.split('=');
      args.set(k as string, v ?? '');
    } else if (ins.op === 'ENV') {
      const [k, v] = ins.args.split('=');
      env[k as string] = v ?? '';
    } else if (ins.op === 'COPY') {
      const parts = ins.args.split(/\s+/);
      const from = parts[0]?.startsWith('--from=') ? stageDirs.get((parts.shift() as string).slice(7)) : ROOT;
      assert.ok(from, 'COPY --from names a stage');
      const dest = parts.pop() as string;
      for (const src of parts) {
        const target = dest.endsWith('/') ? join(dir, dest.replace(/^\.\//, ''), src.split('/').pop() as string) : join(dir, dest.replace(/^\.\//, ''));
        const source = from === ROOT ? join(ROOT, src) : join(from, src.replace(/^\/app\//, ''));
        mkdirSync(dirname(target), { recursive: true });
        cpSync(source, target, { recursive: true });
      }
    } else if (ins.op === 'RUN') {
      execFileSync('sh', ['-c', ins.args], { cwd: dir, env: { ...process.env, ...env, ...npm }, stdio: 'pipe', timeout: 300_000 });
    } else if (ins.op === 'ENTRYPOINT') {
      entrypoint = JSON.parse(ins.args) as string[];
    } else if (ins.op === 'CMD') {
      cmd = JSON.parse(ins.args) as string[];
    }
  }
  const runtimeDir = stageDirs.get(/\bAS (\S+)/i.exec(stages.at(-1)?.args ?? '')?.[1] ?? '') as string;
  assert.ok(readFileSync(join(runtimeDir, 'dist', 'main.js'), 'utf8').length > 0);
  assert.throws(() => readFileSync(join(runtimeDir, 'node_modules', 'typescript', 'package.json')), 'no dev dependencies in the runtime stage');

  const secrets = join(work, 'secrets');
  mkdirSync(secrets);
  writeFileSync(join(secrets, 'key.pem'), generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(join(secrets, 'keys.yaml'), '[]\n');
  const [port, adminPort] = [await freePort(), await freePort()];
  // The admin port from a config file: the HEALTHCHECK must find it there too (it used to read ADMIN_PORT only).
  const configFile = join(secrets, 'gateway.yaml');
  writeFileSync(configFile, `admin:\n  host: 127.0.0.1\n  port: ${adminPort}\n`);
  const [command, ...rest] = entrypoint;
  assert.equal(command, 'node');
  const child = spawn(process.execPath, [...rest, ...cmd], {
    cwd: runtimeDir,
    env: {
      ...env,
      PATH: process.env.PATH ?? '',
      COZE_APP_ID: '1',
      COZE_KEY_ID: 'k',
      COZE_PRIVATE_KEY_FILE: join(secrets, 'key.pem'),
      COZE_BASE_URL: 'http://127.0.0.1:9',
      IDENTITY_API_KEYS_FILE: join(secrets, 'keys.yaml'),
      PORT: String(port),
      HOST: '127.0.0.1',
      GATEWAY_CONFIG: configFile,
      SHUTDOWN_GRACE_SECONDS: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let status = 0;
  for (let i = 0; i < 100 && status !== 200; i++) {
    status = await fetch(`http://127.0.0.1:${adminPort}/healthz`).then((r) => r.status, () => 0);
    if (status !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status, 200, output);
  // The HEALTHCHECK as Docker runs it: inside the container, with the container's environment.
  const health = () => spawnSync(process.execPath, healthCommand().slice(1), { cwd: runtimeDir, env: { ...env, PATH: process.env.PATH ?? '', GATEWAY_CONFIG: configFile }, timeout: 30_000 }).status;
  assert.equal(health(), 0, 'healthy while serving');
  child.kill('SIGTERM');
  assert.equal(await exited, 0, output);
  assert.equal(health(), 1, 'unhealthy once it is gone');
}
