import express, { type Express } from 'express';
import type { Registry } from 'prom-client';

export interface AdminOptions {
  registry: Registry;
  ready(): Promise<{ ready: boolean; detail: string }>;
}

/**
 * The admin port: Prometheus scrapes and Kubernetes probes. No auth (keep the port off the
 * public Service) and no request logs, so probes do not flood the logs.
 */
export function createAdminApp(options: AdminOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/metrics', async (_req, res) => {
    res.setHeader('content-type', options.registry.contentType);
    res.end(await options.registry.metrics());
  });
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const { ready, detail } = await options.ready();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', detail });
  });
  app.use((_req, res) => {
    res.status(404).json({ code: 404001, msg: 'No such admin endpoint: /metrics, /healthz and /readyz are served here.' });
  });
  return app;
}
