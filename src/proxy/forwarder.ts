import http, { type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import httpProxy from 'http-proxy';

export interface ForwarderOptions {
  /** coze.baseUrl: the only host this gateway ever connects to for HTTP. */
  target: string;
  agent?: http.Agent;
}

export interface UpstreamAttempt {
  /** Resolves with the upstream response headers; rejects on a failure before them. */
  response: Promise<IncomingMessage>;
  /** Destroys the upstream request (client gone, deadline passed). */
  abort(reason: Error): void;
  /** True if the upstream request went out on a reused keep-alive socket. */
  reusedSocket(): boolean;
}

export interface Forwarder {
  /**
   * Sends `req` (its url and headers already rewritten by the caller) upstream. The caller
   * handles the response: http-proxy runs with selfHandleResponse, so nothing reaches the
   * client unless we write it.
   */
  send(req: IncomingMessage, res: ServerResponse, body: Readable | undefined): UpstreamAttempt;
  readonly agent: http.Agent;
  close(): void;
}

interface AttemptHooks {
  onProxyReq(proxyReq: ClientRequest): void;
  onProxyRes(proxyRes: IncomingMessage): void;
}

/**
 * http-proxy with one shared keep-alive agent (without one it sends `Connection: close` on
 * every request: SPEC section 10). Its events are global to the proxy server, so each request
 * registers the hooks of its current attempt; a retry replaces them.
 */
export function createForwarder(options: ForwarderOptions): Forwarder {
  const target = new URL(options.target);
  const agent =
    options.agent ??
    (target.protocol === 'https:'
      ? new https.Agent({ keepAlive: true, maxSockets: 512, scheduling: 'lifo' })
      : new http.Agent({ keepAlive: true, maxSockets: 512, scheduling: 'lifo' }));
  const attempts = new WeakMap<IncomingMessage, AttemptHooks>();

  const proxy = httpProxy.createProxyServer({
    target: options.target,
    agent,
    changeOrigin: true,
    selfHandleResponse: true,
    xfwd: false,
    ws: false,
    followRedirects: false,
  });
  proxy.on('proxyReq', (proxyReq, req) => attempts.get(req)?.onProxyReq(proxyReq));
  proxy.on('proxyRes', (proxyRes, req) => attempts.get(req)?.onProxyRes(proxyRes));
  // Every call passes its own error callback; this listener only keeps a stray error from
  // crashing the process, which is http-proxy's default.
  proxy.on('error', () => undefined);

  return {
    agent,
    send(req, res, body) {
      let proxyReq: ClientRequest | undefined;
      let abortReason: Error | undefined;
      let settled = false;
      let fail: (err: Error) => void = () => undefined;
      const response = new Promise<IncomingMessage>((resolve, reject) => {
        const hooks: AttemptHooks = {
          onProxyReq(p) {
            proxyReq = p;
            if (abortReason) p.destroy(abortReason);
            // http-proxy aborts the upstream request itself when the client leaves, and
            // abort() emits no error: without this the attempt would never settle, and its
            // timers would hold the whole request in memory (test/faults/leaks).
            p.once('close', () => {
              // Checked before the Error is built: 'close' ends every request, answered or not.
              if (attempts.get(req) === hooks && !settled) fail(abortReason ?? Object.assign(new Error('the upstream request closed before its response'), { code: 'ECONNRESET' }));
            });
          },
          onProxyRes(proxyRes) {
            if (attempts.get(req) !== hooks || settled) return;
            settled = true;
            proxyReq = (proxyRes as IncomingMessage & { req?: ClientRequest }).req;
            resolve(proxyRes);
          },
        };
        fail = (err) => {
          if (settled) return;
          settled = true;
          reject(err);
        };
        attempts.set(req, hooks);
        const onError = (err: Error) => {
          // Errors of a superseded attempt, or after the response began, are not ours here:
          // the relay watches the response stream itself.
          if (attempts.get(req) !== hooks) return;
          fail(abortReason ?? err);
        };
        // Per-call options make http-proxy copy its options and parse the target on every call:
        // a bodiless request passes none, and http-proxy pipes the (empty) request itself.
        if (body) proxy.web(req, res, { buffer: body }, onError);
        // http-proxy takes (req, res, callback); its typings know only the form with options.
        else (proxy.web as (req: IncomingMessage, res: ServerResponse, callback: (err: Error) => void) => void)(req, res, onError);
      });
      return {
        response,
        abort(reason) {
          abortReason = reason;
          proxyReq?.destroy(reason);
          fail(reason);
        },
        reusedSocket: () => proxyReq?.reusedSocket ?? false,
      };
    },
    close() {
      proxy.close();
      agent.destroy();
    },
  };
}
