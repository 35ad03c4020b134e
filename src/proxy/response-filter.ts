import type { Readable } from 'node:stream';
import { GatewayError } from '../errors.js';
import type { Maybe } from '../maybe.js';
import type { UpstreamResponse } from './forwarder.js';
import { completeBody, InspectionIdle, isJson, type InspectedResponse } from './rewrite-response.js';

/** A bot's whole configuration is a few KiB; an answer past this is not one the gateway relays unfiltered. */
const MAX_FILTERED_BYTES = 1024 * 1024;

/**
 * Applies an endpoint's response rule (endpoints.ts `response`, e.g. bot info reduced to display
 * fields) to a successful JSON answer: the whole answer is read (bounded), filtered, and relayed
 * as one complete body. Anything else passes as it came. An answer that cannot be read or
 * filtered is never relayed unfiltered: 502.
 */
export function filterResponse(upstream: UpstreamResponse, inspected: InspectedResponse, filter: (bytes: Buffer) => Buffer, options: { idleTimeoutMs: number }): Maybe<InspectedResponse> {
  const status = upstream.statusCode;
  if (status < 200 || status >= 300) return inspected;
  if (!isJson(upstream)) {
    upstream.cancel();
    throw new GatewayError('upstream-bad-response', { detail: '(a bot info answer that is not JSON)' });
  }
  // A small answer was read whole by the inspection: filtered at once, with no promise.
  if (inspected.complete) return filtered(inspected, completeBody(inspected), filter);
  return readRest(upstream.body, inspected.prefix, options.idleTimeoutMs).then((bytes) => filtered(inspected, bytes, filter));
}

function filtered(inspected: InspectedResponse, bytes: Buffer, filter: (bytes: Buffer) => Buffer): InspectedResponse {
  try {
    return { tokenRejected: inspected.tokenRejected, cozeCode: inspected.cozeCode, prefix: [filter(bytes)], complete: true };
  } catch {
    throw new GatewayError('upstream-bad-response', { detail: '(the bot info answer could not be read)' });
  }
}

/** The rest of the answer, bounded in size and, like every answer read before the relay, in silence. */
function readRest(body: Readable, prefix: readonly Buffer[], idleTimeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks = [...prefix];
    let size = chunks.reduce((n, c) => n + c.length, 0);
    const fail = (error: Error) => {
      clearTimeout(idle);
      body.destroy();
      reject(error);
    };
    // The same failure as a quiet answer during the inspection: the handler answers 504 and counts it.
    const idle = setTimeout(() => fail(new InspectionIdle()), idleTimeoutMs);
    body.on('data', (chunk: Buffer) => {
      idle.refresh();
      size += chunk.length;
      if (size > MAX_FILTERED_BYTES) return fail(new GatewayError('upstream-bad-response', { detail: '(the bot info answer is too large)' }));
      chunks.push(chunk);
    });
    body.on('end', () => {
      clearTimeout(idle);
      resolve(Buffer.concat(chunks));
    });
    const cut = () => fail(new GatewayError('upstream-bad-response', { detail: '(the bot info answer was cut)' }));
    body.on('error', cut);
    // Destroyed without an error (the client left): settle anyway, so the request's clean-up runs.
    body.on('close', () => body.readableEnded || cut());
    body.resume();
  });
}
