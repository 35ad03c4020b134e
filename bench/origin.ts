import http from 'node:http';
import { performance } from 'node:perf_hooks';

/**
 * The local origin the hot-path benchmark talks to: a small JSON answer, a completed chat with
 * its usage (GET /v3/chat/retrieve), a paced SSE stream whose events carry the time they were
 * written, and a token endpoint (not verifying: the stampede benchmark uses the real emulator
 * for that). Prints its port on stdout.
 */
const BODY = JSON.stringify({ code: 0, msg: '', data: { bot_id: 'bench', name: 'Bench bot', description: 'x'.repeat(40) } });
let exchanges = 0;
let chats = 0;

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  if (req.method === 'POST' && url.startsWith('/api/permission/oauth2/token')) {
    exchanges += 1;
    req.resume();
    const body = JSON.stringify({ access_token: `czs_bench_${exchanges}`, expires_in: Math.floor(Date.now() / 1000) + 3600, token_type: 'Bearer' });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-tt-logid': 'bench' });
    res.end(body);
    return;
  }
  if (url.startsWith('/v3/chat/retrieve')) {
    // A completed chat with its usage, a new chat id each time: what the usage counter reads.
    chats += 1;
    req.resume();
    const body = JSON.stringify({ code: 0, msg: '', data: { id: `chat-${chats}`, conversation_id: 'c', bot_id: 'bench', status: 'completed', usage: { token_count: 30, output_count: 20, input_count: 10 } }, detail: { logid: 'bench' } });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-tt-logid': 'bench' });
    res.end(body);
    return;
  }
  if (url.startsWith('/v3/chat')) {
    const params = new URL(url, 'http://x').searchParams;
    const count = Number(params.get('events') ?? 50);
    const gapMs = Number(params.get('gap') ?? 20);
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    let i = 0;
    const timer = setInterval(() => {
      // Wall-clock time with sub-millisecond resolution, comparable across processes.
      const sentAt = performance.timeOrigin + performance.now();
      res.write(`event:conversation.message.delta\ndata:{"i":${i},"sentAt":${sentAt}}\n\n`);
      if (++i >= count) {
        clearInterval(timer);
        res.end('event:done\ndata:"[DONE]"\n\n');
      }
    }, gapMs);
    res.on('close', () => clearInterval(timer));
    return;
  }
  if (url === '/__exchanges') {
    res.end(String(exchanges));
    return;
  }
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY), 'x-tt-logid': 'bench' });
  res.end(BODY);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
});
