import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import { lookupToken } from '../coze/coze-errors.js';
import type { TokenCache } from '../coze/token-cache.js';
import { GatewayError } from '../errors.js';
import type { GatewayMetrics, UpstreamErrorKind } from '../metrics/metrics.js';
import { answerFromStream, toUpstreamError } from './forwarder.js';
import { InspectionIdle, inspectResponse, type InspectedResponse } from './rewrite-response.js';

/**
 * Coze refused the handshake because it does not accept the session's token, even a freshly
 * minted one: the client is answered the way Coze answered (401 and Coze's own envelope).
 */
export class CozeUpgradeRefusal extends Error {
  constructor(
    readonly body: Buffer,
    readonly logId: string | undefined,
  ) {
    super('Coze refused the WebSocket token');
  }
}

/** The client left before its upgrade was answered: nothing more is done for it. */
export class ClientLeft extends Error {
  constructor() {
    super('the client left before its upgrade was answered');
  }
}

export interface DialDeps {
  tokens: TokenCache;
  metrics: GatewayMetrics;
  connectTimeoutMs: number;
}

export interface DialRequest {
  /** The token cache key of the session's token (admit.ts). */
  tokenKey: string;
  /** The upstream URL and handshake headers for one token. */
  target(accessToken: string): { url: string; headers: Record<string, string> };
  /** Frames Coze sends before the client is accepted (Coze speaks first): attached at once. */
  onMessage(upstream: WebSocket, data: RawData, isBinary: boolean): void;
  /** The client's socket: while it is open the dial goes on; when it closes the dial stops. */
  client: Duplex;
}

type Dialed = { upstream: WebSocket; logId: string | undefined } | { refused: IncomingMessage; inspected: InspectedResponse };

export interface DialedCoze {
  upstream: WebSocket;
  /** Coze's X-Tt-Logid of the accepted handshake, passed on to the client's. */
  logId: string | undefined;
}

/** Coze's 4100 envelope, when its 401 came without a usable body. */
const AUTH_INVALID = Buffer.from(JSON.stringify({ code: 4100, msg: 'authentication is invalid' }));

/**
 * Opens the upstream socket with the session's token. When Coze refuses the handshake because of
 * the token (HTTP 401, or a 4100 / 700012006 body), the token is dropped (only if the cache
 * still holds it) and one more dial is made with a fresh one, as HTTP requests are retried
 * (SPEC section 1, step 8). Any other refusal is 502 upstream-bad-response.
 */
export async function dialCoze(deps: DialDeps, request: DialRequest): Promise<DialedCoze> {
  let token = await tokenOf(deps, request);
  let dialed = await dialOnce(deps, request, token);
  if ('refused' in dialed && dialed.inspected.tokenRejected && !request.client.destroyed) {
    await deps.tokens.invalidateIfSame(request.tokenKey, token);
    deps.metrics.upstreamErrors.labels('retried_token').inc();
    token = await tokenOf(deps, request);
    dialed = await dialOnce(deps, request, token);
  }
  if ('upstream' in dialed) return dialed;
  const { refused, inspected } = dialed;
  if (inspected.cozeCode !== undefined) deps.metrics.countCozeCode(inspected.cozeCode);
  if (inspected.tokenRejected) {
    // Coze's answer about the token, passed on as it is: not a failure to reach Coze.
    const body = Buffer.concat(inspected.prefix);
    const logId = refused.headers['x-tt-logid'];
    throw new CozeUpgradeRefusal(inspected.complete && inspected.cozeCode !== undefined ? body : AUTH_INVALID, typeof logId === 'string' ? logId : undefined);
  }
  deps.metrics.upstreamErrors.labels('bad_response').inc();
  throw new GatewayError('upstream-bad-response', { detail: `(Coze refused the WebSocket with HTTP ${refused.statusCode})` });
}

/**
 * The session's token, once the client is still there to use it: a client that left during the
 * mint gets no dial (the token stays cached for its next upgrade).
 */
async function tokenOf(deps: DialDeps, request: DialRequest): Promise<string> {
  const { accessToken } = await lookupToken(deps.tokens, request.tokenKey);
  if (request.client.destroyed) throw new ClientLeft();
  return accessToken;
}

function dialOnce(deps: DialDeps, request: DialRequest, accessToken: string): Promise<Dialed> {
  const { url, headers } = request.target(accessToken);
  const upstream = new WebSocket(url, { headers, perMessageDeflate: false });
  upstream.on('message', (data, isBinary) => request.onMessage(upstream, data, isBinary));
  // The client may give up while Coze is being dialled: nothing must be left open then.
  const onClientGone = () => upstream.terminate();
  request.client.once('close', onClientGone);
  // The handshake's deadline is kept here rather than by ws (whose error for it carries no code),
  // so that its passing is told apart from a failure to connect, as for HTTP: 504 and `timeout`.
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    upstream.terminate();
  }, deps.connectTimeoutMs);
  let logId: string | undefined;
  upstream.once('upgrade', (response: IncomingMessage) => {
    const header = response.headers['x-tt-logid'];
    logId = typeof header === 'string' ? header : undefined;
  });
  return new Promise<Dialed>((resolve, reject) => {
    upstream.once('open', () => resolve({ upstream, logId }));
    upstream.once('unexpected-response', (handshake, response) => {
      clearTimeout(deadline);
      // No 'error' follows an answered refusal, except from the abort below: swallow it.
      upstream.on('error', () => undefined);
      // The handshake answer in the forwarder's shape, so HTTP and upgrades read refusals alike.
      // A refusal that stalls is bounded by the same time, without a byte.
      inspectResponse(answerFromStream(response.statusCode ?? 0, response.headers, response), { idleTimeoutMs: deps.connectTimeoutMs }, (err, inspected) => {
        handshake.destroy();
        if (inspected) resolve({ refused: response, inspected });
        else reject(dialFailure(deps, request, err instanceof InspectionIdle ? 'idle_timeout' : 'reset', new GatewayError('upstream-bad-response', { detail: '(the refusal was cut)' })));
      });
    });
    upstream.once('error', (err: NodeJS.ErrnoException) => {
      if (timedOut) {
        reject(dialFailure(deps, request, 'timeout', new GatewayError('upstream-timeout', { detail: '(Coze did not complete the WebSocket handshake within server.upstreamTimeoutSeconds.)' })));
        return;
      }
      const failure = toUpstreamError(err);
      reject(dialFailure(deps, request, failure.failure === 'reset' ? 'reset' : 'connect', new GatewayError('upstream-unavailable', { detail: failure.code ? `(${failure.code})` : undefined })));
    });
  }).finally(() => {
    clearTimeout(deadline);
    request.client.off('close', onClientGone);
  });
}

/**
 * A dial that failed: counted in upstream_errors_total by `kind`, as the HTTP path counts its
 * failures, unless the client left first (the dial was cut for it, Coze did nothing wrong).
 */
function dialFailure(deps: DialDeps, request: DialRequest, kind: UpstreamErrorKind, err: GatewayError): Error {
  if (request.client.destroyed) return new ClientLeft();
  deps.metrics.upstreamErrors.labels(kind).inc();
  return err;
}
