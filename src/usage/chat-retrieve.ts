import { randomUUID } from 'node:crypto';
import { lookupToken } from '../coze/coze-errors.js';
import type { TokenCache } from '../coze/token-cache.js';
import type { Forwarder, UpstreamResponse } from '../proxy/forwarder.js';
import { completeBody, inspectResponse, type InspectedResponse } from '../proxy/rewrite-response.js';
import type { RetrieveResult } from './chat-follow-up.js';
import type { OpenChat } from './usage-observer.js';

/**
 * Coze codes after which retrieving the chat again is pointless: bad parameters, invalid chat or
 * conversation, no permission, not found (https://www.coze.cn/open/docs/developer_guides/coze_error_codes).
 * Anything else (a 5xx, 4009 system cap, 4013...) is tried again later.
 */
const GONE_CODES: ReadonlySet<number> = new Set([4000, 4001, 4002, 4101, 4200]);

/**
 * The gateway's own `GET /v3/chat/retrieve` of a chat it follows up (chat-follow-up.ts): with the
 * session's token from the proxy's cache (a mint if none is cached, held by the mint breaker as
 * any mint), through the proxy's own upstream pool to coze.baseUrl. A token Coze rejects is
 * dropped from the cache (compare-and-delete, as the proxy does) and the chat tried again later.
 */
export function createChatRetriever(deps: { forwarder: Forwarder; tokens: TokenCache; timeoutMs: number }): (chat: OpenChat) => Promise<RetrieveResult> {
  return async (chat) => {
    let accessToken: string;
    try {
      accessToken = (await lookupToken(deps.tokens, chat.tokenKey)).accessToken;
    } catch {
      return { kind: 'retry' };
    }
    const inspected = await read(deps, `/v3/chat/retrieve?conversation_id=${encodeURIComponent(chat.conversationId)}&chat_id=${encodeURIComponent(chat.chatId)}`, accessToken);
    if (!inspected) return { kind: 'retry' };
    if (inspected.tokenRejected) {
      await deps.tokens.invalidateIfSame(chat.tokenKey, accessToken).catch(() => false);
      return { kind: 'retry' };
    }
    // A Chat object is small; an answer past what the inspection holds is not one.
    if (!inspected.complete) return { kind: 'gone' };
    let body: { code?: unknown; data?: unknown };
    try {
      body = JSON.parse(completeBody(inspected).toString('utf8')) as typeof body;
    } catch {
      return { kind: 'retry' };
    }
    if (body.code === 0 && typeof body.data === 'object' && body.data !== null) return { kind: 'chat', data: body.data };
    return typeof body.code === 'number' && GONE_CODES.has(body.code) ? { kind: 'gone' } : { kind: 'retry' };
  };
}

/** One GET through the forwarder, read whole within `timeoutMs`; undefined when it failed. */
function read(deps: { forwarder: Forwarder; timeoutMs: number }, path: string, accessToken: string): Promise<InspectedResponse | undefined> {
  return new Promise((resolve) => {
    let answer: UpstreamResponse | undefined;
    let settled = false;
    const settle = (inspected: InspectedResponse | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (inspected && !inspected.complete) answer?.cancel();
      resolve(inspected);
    };
    const headers = { authorization: `Bearer ${accessToken}`, 'accept-encoding': 'identity', 'x-request-id': randomUUID() };
    const call = deps.forwarder.send({ method: 'GET', path, headers, body: null }, (err, res) => {
      if (err || !res) return settle(undefined);
      answer = res;
      inspectResponse(res, { idleTimeoutMs: deps.timeoutMs }, (failed, inspected) => settle(failed ? undefined : inspected));
    });
    const timer = setTimeout(() => {
      call.abort(new Error('chat follow-up timed out'));
      answer?.cancel();
      settle(undefined);
    }, deps.timeoutMs).unref();
  });
}
