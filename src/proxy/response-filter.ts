import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors.js';
import type { InspectedResponse } from './rewrite-response.js';

/** A bot's whole configuration is a few KiB; an answer past this is not one the gateway relays unfiltered. */
const MAX_FILTERED_BYTES = 1024 * 1024;

/**
 * Applies an endpoint's response rule (endpoints.ts `response`, e.g. bot info reduced to display
 * fields) to a successful JSON answer: the whole answer is read (bounded), filtered, and relayed
 * as one complete body. Anything else passes as it came. An answer that cannot be read or
 * filtered is never relayed unfiltered: 502.
 */
export async function filterResponse(proxyRes: IncomingMessage, inspected: InspectedResponse, filter: (bytes: Buffer) => Buffer): Promise<InspectedResponse> {
  const status = proxyRes.statusCode ?? 0;
  if (status < 200 || status >= 300) return inspected;
  if (!/\bjson\b/i.test(proxyRes.headers['content-type'] ?? '')) {
    proxyRes.destroy();
    throw new GatewayError('upstream-bad-response', { detail: '(a bot info answer that is not JSON)' });
  }
  const bytes = inspected.complete ? Buffer.concat(inspected.prefix) : await readRest(proxyRes, inspected.prefix);
  try {
    return { ...inspected, prefix: [filter(bytes)], complete: true };
  } catch {
    throw new GatewayError('upstream-bad-response', { detail: '(the bot info answer could not be read)' });
  }
}

function readRest(res: IncomingMessage, prefix: readonly Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks = [...prefix];
    let size = chunks.reduce((n, c) => n + c.length, 0);
    const fail = (detail: string) => {
      res.destroy();
      reject(new GatewayError('upstream-bad-response', { detail }));
    };
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_FILTERED_BYTES) return fail('(the bot info answer is too large)');
      chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks)));
    res.on('error', () => fail('(the bot info answer was cut)'));
    res.on('aborted', () => fail('(the bot info answer was cut)'));
    res.resume();
  });
}
