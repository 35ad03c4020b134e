import http from 'node:http';
import { ConfigError, loadAdminAddress } from '../config/load.js';
import type { ParsedArgs } from './args.js';

/** Below Docker's HEALTHCHECK --timeout (3 s in the Dockerfile), so the probe reports why it failed. */
const PROBE_TIMEOUT_MS = 2000;

/**
 * `healthcheck [--ready]`: asks the admin port of the gateway running beside it whether it is
 * alive (`/healthz`), or with --ready whether it takes traffic (`/readyz`). The admin address
 * comes from the same layers as `serve` (config file, environment, flags), so the Docker
 * HEALTHCHECK follows admin.port wherever it is set. Exits 0 when healthy, 1 when not: Docker
 * reserves 2, so a configuration it cannot read is 1 too. Prints the URL and the status only.
 *
 * Liveness by default: Docker and Compose cannot tell the two apart, and in Swarm an unhealthy
 * task is replaced, so /readyz (503 while the identity provider is down or during a drain) would
 * restart every replica over an outage elsewhere.
 */
export async function runHealthcheck(args: ParsedArgs): Promise<number> {
  let address: { host: string; port: number };
  try {
    address = loadAdminAddress({ flags: args.flags, env: process.env });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`unhealthy: ${err.message}\n`);
    return 1;
  }
  if (address.port === 0) {
    process.stderr.write('unhealthy: admin.port (ADMIN_PORT) is 0, a port chosen at start: set the port the gateway listens on\n');
    return 1;
  }
  const path = args.switches.has('ready') ? '/readyz' : '/healthz';
  const url = `http://${probeHost(address.host)}:${address.port}${path}`;
  try {
    const res = await probe(url);
    const body = parse(res.body) as { status?: unknown } | undefined;
    // Another process on the port (a 200 from something else) is no sign of the gateway's health.
    const ours = typeof body?.status === 'string';
    const healthy = res.status === 200 && ours;
    const write = healthy ? process.stdout : process.stderr;
    write.write(`${healthy ? 'healthy' : 'unhealthy'}: ${url} answered ${res.status}${ours ? ` (${String(body?.status)})` : ', not the gateway admin endpoint'}\n`);
    return healthy ? 0 : 1;
  } catch (err) {
    process.stderr.write(`unhealthy: ${url}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
    return 1;
  }
}

/**
 * One GET with node:http: fetch refuses the ports browsers block (6000, 6665-6669, 10080, ...),
 * which are valid admin ports all the same.
 */
function probe(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: PROBE_TIMEOUT_MS, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        // The admin endpoints answer a few bytes; a stranger streaming more is not read on.
        if (body.length < MAX_BODY_CHARS) body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

const MAX_BODY_CHARS = 64 * 1024;

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

/** A wildcard bind address is reached on loopback; a named one as itself. */
function probeHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
