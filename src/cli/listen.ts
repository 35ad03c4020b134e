import type { Server } from 'node:http';
import { ConfigError, settingIssue } from '../config/load.js';

/**
 * Listen failures that the configuration causes, and which of the two settings is at fault: they
 * exit with the configuration's code (2), like any other bad setting. Anything else (EMFILE, ...)
 * is an outage of the machine, exit 1.
 */
const CAUSED_BY = { ENOTFOUND: 'host', EADDRNOTAVAIL: 'host', EADDRINUSE: 'port', EACCES: 'port' } as const;

/** Resolves once listening; rejects with Node's own error (its `code` says why). */
export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Why `host:port` could not be listened on, in words an operator can act on. */
export function listenFailure(err: unknown, host: string, port: number): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EADDRINUSE':
      return `port ${port} on ${host} is already in use`;
    case 'EACCES':
      return `not permitted to listen on ${host}:${port}${port < 1024 ? ' (ports below 1024 need privileges)' : ''}`;
    case 'ENOTFOUND':
      return `cannot listen on ${host}:${port}: the host name ${host} does not resolve (ENOTFOUND)`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${host}:${port}: ${host} is not an address of this machine (EADDRNOTAVAIL)`;
    default:
      return `cannot listen on ${host}:${port}: ${code ?? (err as Error).message}`;
  }
}

/**
 * The error `serve` stops with when a listener cannot start, naming both settings of that
 * listener (`server.host`/`server.port` or `admin.host`/`admin.port`, with their environment
 * variables): the one at fault as the issue, the other next to it.
 */
export function listenError(section: 'server' | 'admin', host: string, port: number, err: unknown): Error {
  const reason = listenFailure(err, host, port);
  const hostIssue = settingIssue(`${section}.host`, reason);
  const portIssue = settingIssue(`${section}.port`, reason);
  const name = (issue: { key: string; env?: string }) => (issue.env ? `${issue.key} (${issue.env})` : issue.key);
  const cause = CAUSED_BY[(err as NodeJS.ErrnoException).code as keyof typeof CAUSED_BY] as 'host' | 'port' | undefined;
  if (!cause) return new Error(`${reason} (${name(hostIssue)}, ${name(portIssue)})`);
  const [atFault, other] = cause === 'host' ? [hostIssue, portIssue] : [portIssue, hostIssue];
  return new ConfigError([{ ...atFault, message: `${reason}; with ${name(other)} ${cause === 'host' ? port : host}` }]);
}

export function addressPort(server: Server): number {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
}
