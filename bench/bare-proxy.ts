import http from 'node:http';
import httpProxy from 'http-proxy';

/**
 * The floor every Node proxy is measured against: http-proxy with a keep-alive agent and
 * nothing else (no auth, no metrics, no logs). Prints its port on stdout.
 */
const target = process.env.TARGET ?? 'http://127.0.0.1:1';
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
const proxy = httpProxy.createProxyServer({ target, agent });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502).end();
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
