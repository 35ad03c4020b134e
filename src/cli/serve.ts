import type { Server } from 'node:http';
import { loadConfig } from '../config/load.js';
import { drain, trackInflight } from '../lifecycle/drain.js';
import { createGateway, createMainServer } from '../server.js';
import type { ParsedArgs } from './args.js';
import { untilSignal } from './signals.js';
import http from 'node:http';

/** `serve`: the gateway on its main and admin ports until SIGTERM/SIGINT, then a graceful drain. */
export async function runServe(args: ParsedArgs): Promise<number> {
  const config = loadConfig({ flags: args.flags, env: process.env });
  const gateway = await createGateway(config);
  const main = createMainServer(gateway.handler, config.server);
  main.on('upgrade', gateway.onUpgrade);
  const inflight = trackInflight(main);
  const admin = http.createServer(gateway.adminHandler);

  await listen(main, config.server.port, config.server.host, 'server.port');
  await listen(admin, config.admin.port, config.admin.host, 'admin.port');
  gateway.logger.info(
    { port: addressPort(main), adminPort: addressPort(admin), coze: config.coze.baseUrl, appId: config.coze.appId },
    'coze-session-gateway listening',
  );

  const signal = await untilSignal();
  gateway.logger.info({ signal, graceSeconds: config.server.shutdownGraceSeconds }, 'draining');
  const outcome = await drain(gateway, main, inflight, config.server.shutdownGraceSeconds * 1000);
  await new Promise<void>((resolve) => admin.close(() => resolve()));
  admin.closeAllConnections();
  await gateway.close();
  gateway.logger.info({ outcome }, 'stopped');
  await new Promise<void>((resolve) => gateway.logger.flush(() => resolve()));
  return 0;
}

export function listen(server: Server, port: number, host: string, setting: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new Error(err.code === 'EADDRINUSE' ? `port ${port} on ${host} is already in use (${setting})` : `cannot listen on ${host}:${port} (${setting}): ${err.code ?? err.message}`));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export function addressPort(server: Server): number {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
}
