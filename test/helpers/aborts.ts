import http from 'node:http';

/**
 * Clients that leave half-way, shared by the leak test and the leak benchmark. Each resolves
 * once it has gone; none of them throws on the errors its own abort causes.
 */

/** A chat stream, given up on once its headers arrive (a paced emulator sends nothing more). */
export function abortedStream(target: { port: number; agent: http.Agent; authorization: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ bot_id: 'b', stream: true, additional_messages: [{ role: 'user', content: 'hi', content_type: 'text' }] });
    const req = http.request(
      { port: target.port, host: '127.0.0.1', method: 'POST', path: '/v3/chat', agent: target.agent, headers: { authorization: target.authorization, 'content-type': 'application/json' } },
      (res) => {
        if (res.statusCode !== 200) return reject(new Error(`the stream was answered with ${res.statusCode}`));
        req.destroy();
        resolve();
      },
    );
    req.on('error', (err) => (req.destroyed ? resolve() : reject(err)));
    req.end(body);
  });
}

/** An upload that stops after its first 64 KiB of a declared 1 MiB. */
export function abortedUpload(target: { port: number; agent: http.Agent; authorization: string }): Promise<void> {
  return new Promise((resolve) => {
    const req = http.request({
      port: target.port,
      host: '127.0.0.1',
      method: 'POST',
      path: '/v1/files/upload',
      agent: target.agent,
      headers: { authorization: target.authorization, 'content-type': 'multipart/form-data; boundary=b', 'content-length': String(1024 * 1024) },
    });
    req.on('error', () => resolve());
    req.on('response', (res) => {
      res.resume();
      resolve();
    });
    req.write(`--b\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n${'x'.repeat(64 * 1024)}`, () => {
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 5);
    });
  });
}

/** Runs `one` `total` times, 100 at a time. */
export async function inBatches(total: number, one: () => Promise<void>): Promise<void> {
  for (let done = 0; done < total; done += 100) await Promise.all(Array.from({ length: Math.min(100, total - done) }, one));
}
