import type { IncomingMessage } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { GatewayError } from '../errors.js';

/** How the request body goes upstream: replayed from memory, or streamed once. */
export interface BodyPlan {
  /** A body held in memory (or no body) can be sent again, for the retry on a revoked token. */
  readonly replayable: boolean;
  /** Byte length when known up front; sets Content-Length upstream. */
  readonly length: number | undefined;
  /**
   * The body of one upstream attempt: the bytes themselves when held in memory (null when
   * empty), or a stream, which a streamed body gives only once.
   */
  open(onError: (err: Error) => void): Buffer | Readable | null;
  bytesIn(): number;
}

export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Refuses a declared length over the bound before a single body byte is read. */
export function checkDeclaredLength(req: IncomingMessage, maxBytes: number): void {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) throw new GatewayError('body-too-large');
}

export function bufferedBody(buffer: Buffer): BodyPlan {
  return {
    replayable: true,
    length: buffer.length,
    // The bytes themselves, not a stream: a Readable per bodiless GET showed in the profile.
    open: () => (buffer.length > 0 ? buffer : null),
    bytesIn: () => buffer.length,
  };
}

/**
 * Reads a JSON body into memory within the bound: only on routes whose policy needs it. The bytes
 * are kept as sent; the body policy parses them without re-serialising (json-body.ts).
 */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new GatewayError('body-too-large');
    chunks.push(chunk);
  }
  const body = Buffer.concat(chunks);
  if (body.toString('utf8').trim() === '') throw new GatewayError('bad-json-body', { detail: 'The body is empty.' });
  return body;
}

/**
 * Streams the body through a byte counter, so an upload is never held in memory and a body
 * over the bound is cut as soon as it passes it (SPEC: multipart uploads are never buffered).
 */
export function streamedBody(req: IncomingMessage, maxBytes: number): BodyPlan {
  let count = 0;
  let opened = false;
  const declared = req.headers['content-length'];
  return {
    replayable: false,
    length: declared !== undefined && req.headers['transfer-encoding'] === undefined ? Number(declared) : undefined,
    open(onError) {
      if (opened) throw new TypeError('a streamed body can be sent only once');
      opened = true;
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          count += chunk.length;
          if (count > maxBytes) callback(new GatewayError('body-too-large'));
          else callback(null, chunk);
        },
      });
      counter.on('error', onError);
      req.on('error', onError);
      return req.pipe(counter);
    },
    bytesIn: () => count,
  };
}
