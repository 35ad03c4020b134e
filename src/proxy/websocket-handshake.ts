import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors.js';

/** RFC 6455 section 4.1: 16 random bytes, base64 (what `ws` itself accepts). */
const KEY = /^[+/0-9A-Za-z]{22}==$/;
/** The protocol versions `ws` speaks; 8 is the hybi draft some old clients still send. */
const VERSIONS: ReadonlySet<string> = new Set(['13', '8']);
/** RFC 6455 section 4.1: a comma-separated list of RFC 7230 tokens (optional whitespace around commas). */
const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const PROTOCOL_LIST = new RegExp(`^${TOKEN}(?:[ \\t]*,[ \\t]*${TOKEN})*$`);

/**
 * Refuses a handshake `ws` would refuse, before the caller is admitted and Coze dialled: `ws`
 * answers such a handshake itself without calling back, so an upstream opened first would be
 * left with nobody to relay to. Every check mirrors one in `ws`'s `handleUpgrade`, so a
 * handshake that passes here is one `ws` completes.
 */
export function checkHandshake(req: IncomingMessage): void {
  if (req.method !== 'GET') throw malformed('A WebSocket handshake is a GET request.');
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') throw malformed('A WebSocket handshake needs the header Upgrade: websocket.');
  const key = req.headers['sec-websocket-key'];
  if (key === undefined || !KEY.test(key)) throw malformed('The Sec-WebSocket-Key header is missing or is not 16 bytes in base64.');
  const version = req.headers['sec-websocket-version'];
  if (version === undefined || !VERSIONS.has(version)) {
    // RFC 6455 section 4.4: a server names the versions it speaks when it refuses one.
    throw new GatewayError('bad-request', { detail: 'The Sec-WebSocket-Version header is missing or not 13.', headers: { 'sec-websocket-version': '13, 8' } });
  }
  const protocols = req.headers['sec-websocket-protocol'];
  if (protocols !== undefined && !validProtocolList(protocols)) throw malformed('The Sec-WebSocket-Protocol header is not a list of distinct tokens.');
}

function validProtocolList(header: string): boolean {
  if (!PROTOCOL_LIST.test(header)) return false;
  const names = header.split(',').map((name) => name.trim());
  return new Set(names).size === names.length;
}

function malformed(detail: string): GatewayError {
  return new GatewayError('bad-request', { detail });
}
