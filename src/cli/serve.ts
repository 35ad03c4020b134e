import http from 'node:http';
import { configuredSources } from '../auth/identity.js';
import { configuredTopology } from '../cache/redis-topology.js';
import { loadConfig } from '../config/load.js';
import { drain, trackInflight } from '../lifecycle/drain.js';
import { createGateway, createMainServer } from '../server.js';
import type { ParsedArgs } from './args.js';
import { addressPort, listen, listenError } from './listen.js';
import { untilSignal } from './signals.js';

/** Closing the admin port, Redis and flushing the log after the drain share this long at most. */
const AFTER_DRAIN_MS = 1000;

/** `serve`: the gateway on its main and admin ports until SIGTERM/SIGINT, then a graceful drain. */
export async function runServe(args: ParsedArgs): Promise<number> {
  const config = loadConfig({ flags: args.flags, env: process.env });
  const gateway = await createGateway(config);
  const main = createMainServer(gateway, config.server);
  main.on('upgrade', gateway.onUpgrade);
  const inflight = trackInflight(main);
  const admin = http.createServer(gateway.adminHandler);

  for (const [server, section] of [[main, 'server'], [admin, 'admin']] as const) {
    const { host, port } = config[section];
    await listen(server, port, host).catch((err: unknown) => {
      throw listenError(section, host, port, err);
    });
  }
  const [port, adminPort] = [addressPort(main), addressPort(admin)];
  gateway.logger.info(
    {
      host: config.server.host,
      port,
      adminHost: config.admin.host,
      adminPort,
      identitySources: configuredSources(config.identity),
      trustedHeader: config.identity.trustedHeader.name,
      coze: config.coze.baseUrl,
      appId: config.coze.appId,
      sharedCache: configuredTopology(config.cache) ?? 'none',
    },
    `listening on ${config.server.host}:${port} (admin ${config.admin.host}:${adminPort})`,
  );

  const signal = await untilSignal();
  gateway.logger.info({ signal, graceSeconds: config.server.shutdownGraceSeconds }, 'draining');
  const report = await drain(gateway, main, inflight, config.server.shutdownGraceSeconds * 1000);
  // The drain ended inside the window; what follows shares one bound, so a stuck Redis socket, a
  // scraper holding the admin port or a full stdout pipe can never keep the pod up until SIGKILL.
  const cleanupDeadline = Date.now() + AFTER_DRAIN_MS;
  const cleaned = await bounded(
    cleanupDeadline,
    (async () => {
      const adminClosed = new Promise<void>((resolve) => admin.close(() => resolve()));
      admin.closeAllConnections();
      await adminClosed;
      await gateway.close();
    })(),
  );
  gateway.logger.info({ ...report, ...(cleaned ? {} : { cleanup: 'timed out' }) }, 'stopped');
  // The flush gets what the clean-up left of the bound; whatever is still buffered after it is
  // written synchronously by pino's exit hook.
  await bounded(
    cleanupDeadline,
    new Promise<void>((resolve) => gateway.logger.flush(() => resolve())),
  );
  return 0;
}

/** True when `work` finished by `deadline` (a Date.now() value). */
function bounded(deadline: number, work: Promise<void>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work.then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
    }),
  ]).finally(() => clearTimeout(timer));
}
