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
    const res = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const body = (await res.json().catch(() => undefined)) as { status?: unknown } | undefined;
    // Another process on the port (a 200 from something else) is no sign of the gateway's health.
    const ours = typeof body?.status === 'string';
    const healthy = res.ok && ours;
    const write = healthy ? process.stdout : process.stderr;
    write.write(`${healthy ? 'healthy' : 'unhealthy'}: ${url} answered ${res.status}${ours ? ` (${String(body?.status)})` : ', not the gateway admin endpoint'}\n`);
    return healthy ? 0 : 1;
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
    process.stderr.write(`unhealthy: ${url}: ${cause}\n`);
    return 1;
  }
}

/** A wildcard bind address is reached on loopback; a named one as itself. */
function probeHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
