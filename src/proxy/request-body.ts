import type { IncomingMessage } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { GatewayError } from '../errors.js';
import type { Maybe } from '../maybe.js';
import type { CompiledEndpoint } from '../policy/route-table.js';
import type { BodyBudget } from './body-budget.js';

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
  /** The Content-Type to forward instead of the caller's: a JSON body the gateway read goes out as application/json. */
  readonly contentType?: string;
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

export function bufferedBody(buffer: Buffer, contentType?: string): BodyPlan {
  return {
    replayable: true,
    length: buffer.length,
    // The bytes themselves, not a stream: a Readable per bodiless GET showed in the profile.
    open: () => (buffer.length > 0 ? buffer : null),
    bytesIn: () => buffer.length,
    // Here and not spread in later: V8 makes `{ ...plan, contentType }` a slow dictionary (bench/README.md).
    contentType,
  };
}

export interface BufferedReadOptions {
  maxBytes: number;
  /** The memory shared by every body being held (server.bufferedBodyBudgetBytes); none for tiny local reads. */
  budget?: BodyBudget;
  /** server.bodyReadTimeoutSeconds: the whole body must arrive within it. */
  deadlineMs?: number;
  /** Called with the bytes reserved from the budget; the caller gives them back when the request ends. */
  onReserved?: (bytes: number) => void;
  /** Called when the budget refuses or the deadline passes (metrics). */
  onLimit?: (limit: 'body_budget' | 'body_timeout') => void;
}

/** Retry-After of a refusal for a spent body budget: held bodies are released within seconds. */
const BUDGET_RETRY_SECONDS = 2;

/**
 * Reads a body into memory within its bounds: the size (413), the shared budget (503 with
 * Retry-After, before a byte is read when the length is declared) and the deadline (408). The
 * bytes are kept as sent; the policy parses them without re-serialising (json-body.ts).
 */
export async function readBufferedBody(req: IncomingMessage, options: BufferedReadOptions): Promise<Buffer> {
  const { budget } = options;
  let reserved = 0;
  const reserve = (bytes: number): void => {
    if (!budget || bytes <= 0) return;
    if (!budget.take(bytes)) {
      options.onLimit?.('body_budget');
      throw new GatewayError('gateway-busy', { headers: { 'retry-after': String(BUDGET_RETRY_SECONDS) } });
    }
    reserved += bytes;
    options.onReserved?.(bytes);
  };
  const declared = req.headers['transfer-encoding'] === undefined ? Number(req.headers['content-length'] ?? 0) : 0;
  reserve(Math.min(declared, options.maxBytes));

  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = options.deadlineMs === undefined ? undefined : setTimeout(() => {
      options.onLimit?.('body_timeout');
      fail(new GatewayError('body-timeout'));
    }, options.deadlineMs);
    const cleanup = () => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const fail = (err: Error) => {
      cleanup();
      // Nothing more is read: the error answer closes the connection (error-response.ts).
      req.pause();
      chunks.length = 0;
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      try {
        if (size > options.maxBytes) throw new GatewayError('body-too-large');
        if (size > reserved) reserve(size - reserved);
      } catch (err) {
        fail(err as Error);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => fail(err);
    const onAborted = () => fail(Object.assign(new Error('the client went away while sending the body'), { code: 'ECONNRESET' }));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/**
 * Reads a JSON body into memory within the bound: only on routes whose policy needs it. The bytes
 * are kept as sent; the body policy parses them without re-serialising (json-body.ts).
 */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const body = await readBufferedBody(req, { maxBytes });
  if (isBlank(body)) throw new GatewayError('bad-json-body', { detail: 'The body is empty.' });
  return body;
}

/** True for a body of JSON whitespace only (or none). */
export function isBlank(body: Buffer): boolean {
  return body.toString('utf8').trim() === '';
}

/**
 * The media type of a JSON body the gateway reads: application/json, UTF-8, not encoded. A form
 * type is refused rather than read as JSON, because a form decoder upstream would read the body
 * another way than the gateway checked it (issue 15, finding 4).
 */
export function checkJsonMediaType(headers: IncomingMessage['headers']): void {
  const encoding = headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') throw new GatewayError('unsupported-media-type', { detail: '(Content-Encoding)' });
  const [type = '', ...params] = (headers['content-type'] ?? '').split(';').map((part) => part.trim().toLowerCase());
  if (type !== 'application/json') throw new GatewayError('unsupported-media-type');
  for (const param of params) {
    if (param === '') continue;
    const [name, value = ''] = param.split('=').map((x) => x.trim());
    if (name !== 'charset' || !['utf-8', '"utf-8"', 'utf8'].includes(value)) throw new GatewayError('unsupported-media-type', { detail: '(only charset=utf-8 is accepted)' });
  }
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

export interface BodyPlanOptions extends Omit<BufferedReadOptions, 'deadlineMs'> {
  deadlineMs: number;
}

/**
 * How this request's body travels, by its endpoint's body rule (endpoints.ts): refused where none
 * is expected, streamed unread (uploads, passthrough routes), or read, checked and rewritten.
 * Everything is decided before a byte goes to Coze.
 */
export function planBody(req: IncomingMessage, endpoint: CompiledEndpoint, sessionName: string, options: BodyPlanOptions): Maybe<BodyPlan> {
  const rule = endpoint.body;
  const present = hasBody(req);
  if (rule.kind === 'none') {
    // No body, the common GET: decided at once, with no promise (src/maybe.ts).
    if (!present) return NO_BODY;
    // A declared length says it; a chunked body may still turn out empty (some clients frame every POST so).
    if (req.headers['transfer-encoding'] === undefined) throw new GatewayError('unexpected-body');
    return readBufferedBody(req, { ...options, maxBytes: 0 }).then(
      (bytes) => {
        if (bytes.length > 0) throw new GatewayError('unexpected-body');
        return bufferedBody(bytes);
      },
      (err: unknown) => {
        throw err instanceof GatewayError && err.reason === 'body-too-large' ? new GatewayError('unexpected-body') : err;
      },
    );
  }
  checkDeclaredLength(req, options.maxBytes);
  if (rule.kind === 'stream') return present ? streamedBody(req, options.maxBytes) : NO_BODY;
  if (!present) {
    if (rule.required) throw new GatewayError('bad-json-body', { detail: 'The body is empty.' });
    return NO_BODY;
  }
  checkJsonMediaType(req.headers);
  return readBufferedBody(req, options).then((bytes): BodyPlan => {
    if (isBlank(bytes)) {
      if (rule.required) throw new GatewayError('bad-json-body', { detail: 'The body is empty.' });
      return NO_BODY;
    }
    const rewritten = endpoint.rules.rewriteBody ? endpoint.rules.rewriteBody(bytes, sessionName) : bytes;
    return bufferedBody(rewritten, 'application/json');
  });
}

/** The plan of every request without a body: it holds no state, so one serves them all. */
const NO_BODY: BodyPlan = Object.freeze(bufferedBody(Buffer.alloc(0)));
