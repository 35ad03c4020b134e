import { AUDIO_ROUTES } from './api-audio.js';
import { CHAT_ROUTES } from './api-chat.js';
import { ApiError, sendJson, type ApiContext } from './api-context.js';
import { CONVERSATION_ROUTES } from './api-conversations.js';
import { RESOURCE_ROUTES } from './api-resources.js';
import { WORKFLOW_ROUTES } from './api-workflows.js';

export { sendJson } from './api-context.js';
export type { ApiContext, ApiSettings } from './api-context.js';

/** [methods joined by |, path pattern, handler]: one route of the emulated Coze API. */
export type ApiRoute = readonly [string, RegExp, (ctx: ApiContext, match: RegExpExecArray) => void | Promise<void>];

const ROUTES: readonly ApiRoute[] = [...CONVERSATION_ROUTES, ...CHAT_ROUTES, ...WORKFLOW_ROUTES, ...AUDIO_ROUTES, ...RESOURCE_ROUTES];

/**
 * Coze's end-user API (see src/policy/endpoints.ts) on in-memory state. Every resource belongs to
 * one (app, session_name): another session gets code 4101, exactly the isolation the gateway
 * exists to provide. Business errors are HTTP 200 with `{code, msg}`, as Coze answers them.
 */
export async function handleApi(ctx: ApiContext): Promise<void> {
  try {
    for (const [methods, pattern, handler] of ROUTES) {
      if (!methods.split('|').includes(ctx.method)) continue;
      const match = pattern.exec(ctx.path);
      // Awaited here, so that an ApiError thrown after an await (a chat into another
      // session's conversation) is still a 4101 and never a 500.
      if (match) return await handler(ctx, match);
    }
    sendJson(ctx.res, 404, { code: 4200, msg: 'route not found' }, ctx.logId);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    sendJson(ctx.res, 200, { code: err.code, msg: err.message, detail: { logid: ctx.logId } }, ctx.logId);
  }
}
