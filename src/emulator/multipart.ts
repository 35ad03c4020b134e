import type { IncomingMessage } from 'node:http';

/** The first bytes of a file part are kept (transcriptions read them); the rest is only counted. */
const HEAD_BYTES = 64 * 1024;

/**
 * Streams a multipart upload without holding it: counts the file part's bytes as they arrive,
 * keeps its first HEAD_BYTES, and reads the file name from the part headers. `onBytes` reports
 * progress (tests use it to prove that the gateway streams rather than buffers).
 */
export async function readUpload(req: IncomingMessage, onBytes: (n: number) => void): Promise<{ fileName: string; bytes: number; head: Buffer } | undefined> {
  const type = req.headers['content-type'] ?? '';
  const boundaryMatch = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(type);
  if (!/^multipart\/form-data/i.test(type) || !boundaryMatch) return undefined;
  const delimiter = Buffer.from(`\r\n--${boundaryMatch[1] ?? boundaryMatch[2]}`);
  let state: 'preamble' | 'headers' | 'body' | 'done' = 'preamble';
  let carry = Buffer.alloc(0);
  let fileName = '';
  let bytes = 0;
  const head: Buffer[] = [];
  let headBytes = 0;
  const keep = (part: Buffer) => {
    if (headBytes >= HEAD_BYTES) return;
    const slice = part.subarray(0, HEAD_BYTES - headBytes);
    head.push(Buffer.from(slice));
    headBytes += slice.length;
  };
  let inFile = false;
  let found = false;

  for await (const chunk of req as AsyncIterable<Buffer>) {
    onBytes(chunk.length);
    carry = Buffer.concat([carry, chunk]);
    for (;;) {
      if (state === 'preamble') {
        const start = carry.indexOf(delimiter.subarray(2));
        if (start === -1) break;
        carry = carry.subarray(start + delimiter.length - 2);
        state = 'headers';
      } else if (state === 'headers') {
        const end = carry.indexOf('\r\n\r\n');
        if (end === -1) break;
        const head = carry.subarray(0, end).toString('utf8');
        if (head.startsWith('--')) {
          state = 'done';
          break;
        }
        const name = /name="([^"]*)"/i.exec(head)?.[1];
        inFile = name === 'file';
        if (inFile) {
          found = true;
          fileName = /filename="([^"]*)"/i.exec(head)?.[1] ?? 'file';
        }
        carry = carry.subarray(end + 4);
        state = 'body';
      } else if (state === 'body') {
        const end = carry.indexOf(delimiter);
        if (end === -1) {
          // Keep only what could be the start of a delimiter; count and drop the rest.
          const held = Math.min(carry.length, delimiter.length);
          if (inFile) {
            bytes += carry.length - held;
            keep(carry.subarray(0, carry.length - held));
          }
          carry = carry.subarray(carry.length - held);
          break;
        }
        if (inFile) {
          bytes += end;
          keep(carry.subarray(0, end));
        }
        carry = carry.subarray(end + delimiter.length);
        state = 'headers';
      } else {
        break;
      }
    }
  }
  return found ? { fileName, bytes, head: Buffer.concat(head) } : undefined;
}
