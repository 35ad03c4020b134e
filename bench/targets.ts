import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair } from 'jose';
import { generateEmulatorApp } from '../src/emulator/index.js';
import { callerJwt, freePort, gatewayEnv, hasTaskset, load, ROOT, startGateway, startProcess, withChildren, type Child } from './lib.js';

/** One way to reach the local origin: its URL, what to send, and whose CPU to count. */
export interface Target {
  name: string;
  url: string;
  headers?: Record<string, string>;
  pids: number[];
}

export interface ProxyTargets {
  originUrl: string;
  /** The caller JWT the gateways accept (RS256, already verified after the first request). */
  jwt: string;
  targets: Target[];
  byName(name: string): Target;
  stop(): Promise<void>;
}

export const PATH = '/v1/bots/bench';
export const DIRECT = 'direct';
export const BARE = 'bare http-proxy';
export const BARE_UNDICI = 'bare undici';
export const GATEWAY = 'gateway';
/** The same build in a second process: A against A' is each section's noise floor. */
export const GATEWAY_AGAIN = "gateway (A')";
export const NGINX = 'nginx';

/** The local origin on CPU 0, and a caller whose JWT the gateways started with `publicKey` accept. */
export async function startOrigin(): Promise<{ origin: Child; publicKey: string; jwt: string }> {
  const caller = await generateKeyPair('RS256');
  const publicKey = await exportSPKI(caller.publicKey);
  const jwt = await callerJwt(caller.privateKey, 'bench-user');
  const origin = await startProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'origin.ts')], {}, 0);
  return { origin, publicKey, jwt };
}

/**
 * The hot path's cast, each pinned like BENCH.md says: the origin on CPU 0 (with the load
 * generator), every proxy on CPU 1. `builds` adds gateways from other checkouts (bench:compare).
 */
export async function startProxyTargets(options: { nginx: boolean; bareUndici: boolean; builds?: Array<{ name: string; root: string }> }): Promise<ProxyTargets> {
  const { origin, publicKey, jwt } = await startOrigin();
  const children: Child[] = [origin];
  const originUrl = `http://127.0.0.1:${origin.port}`;
  const pidsOf = (child: Child) => (child.proc.pid ? [child.proc.pid] : []);
  const targets: Target[] = [{ name: DIRECT, url: `${originUrl}${PATH}`, pids: pidsOf(origin) }];

  const bare = await startProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'bare-proxy.ts')], { TARGET: originUrl }, 1);
  children.push(bare);
  targets.push({ name: BARE, url: `http://127.0.0.1:${bare.port}${PATH}`, pids: pidsOf(bare) });
  if (options.bareUndici) {
    const undici = await startProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'bare-undici.ts')], { TARGET: originUrl }, 1);
    children.push(undici);
    targets.push({ name: BARE_UNDICI, url: `http://127.0.0.1:${undici.port}${PATH}`, pids: pidsOf(undici) });
  }
  const { privateKeyPem } = await generateEmulatorApp();
  const builds = [
    { name: GATEWAY, root: ROOT },
    { name: GATEWAY_AGAIN, root: ROOT },
    ...(options.builds ?? []),
  ];
  for (const build of builds) {
    const port = await freePort();
    const gateway = await startGateway({ ...gatewayEnv(originUrl, publicKey, port, await freePort()), COZE_PRIVATE_KEY: privateKeyPem }, 1, [], build.root);
    children.push(gateway);
    targets.push({ name: build.name, url: `http://127.0.0.1:${port}${PATH}`, headers: { authorization: `Bearer ${jwt}` }, pids: pidsOf(gateway) });
  }
  const nginx = options.nginx ? startNginx(origin.port) : undefined;
  if (nginx) targets.push({ name: NGINX, url: `http://127.0.0.1:${nginx.port}${PATH}`, pids: [] });
  // The first request through each gateway mints its token and verifies the caller JWT.
  for (const t of targets) await load(t.url, { connections: 4, seconds: 1, ...(t.headers ? { headers: t.headers } : {}) });
  // nginx's worker exists once it has served: its CPU counts with the master's.
  const nginxTarget = targets.find((t) => t.name === NGINX);
  if (nginx && nginxTarget) nginxTarget.pids = withChildren(nginx.masterPid());

  return {
    originUrl,
    jwt,
    targets,
    byName(name) {
      const found = targets.find((t) => t.name === name);
      if (!found) throw new Error(`no bench target named ${name}`);
      return found;
    },
    async stop() {
      await Promise.all(children.map((c) => c.stop()));
      nginx?.stop();
    },
  };
}

/** nginx with one worker and an upstream keep-alive pool, if installed (BENCH.md's reference). */
function startNginx(originPort: number): { port: number; masterPid(): number; stop(): void } | undefined {
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
  return {
    port,
    masterPid: () => Number(readFileSync(join(dir, 'nginx.pid'), 'utf8').trim()),
    stop: () => void spawnSync(nginx, ['-c', join(dir, 'nginx.conf'), '-p', dir, '-s', 'stop']),
  };
}
