import http from 'node:http';
import { createForwarder } from '../src/proxy/forwarder.js';

/**
 * The gateway's own forwarder with nothing around it (no auth, policy, metrics or logs): what
 * the gateway's steps cost is the gateway minus this. Prints its port on stdout.
 */
const forwarder = createForwarder({ target: process.env.TARGET ?? 'http://127.0.0.1:1' });
const server = http.createServer((req, res) => {
  // Hop-by-hop headers are undici's to set (it refuses some); the bench sends none of the rest.
  const { host: _host, connection: _connection, 'keep-alive': _keepAlive, ...headers } = req.headers;
  const call = forwarder.send({ method: req.method ?? 'GET', path: req.url ?? '/', headers, body: null }, (err, upstream) => {
    res.off('close', onClose);
    if (!upstream) {
      if (!res.headersSent) res.writeHead(502).end(String(err?.message));
      return;
    }
    res.writeHead(upstream.statusCode, upstream.headers);
    upstream.body.pipe(res);
  });
  const onClose = () => call.abort(new Error('client gone'));
  res.on('close', onClose);
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
