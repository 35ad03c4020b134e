import { addMessage, ApiError, bodyOf, conversationView, messageView, ok, owned, ownedMessage, param, type ApiContext } from './api-context.js';
import type { ApiRoute } from './api.js';
import { newId, sameOwner } from './store.js';

/** Conversations, their messages and message feedback (Coze docs: https://www.coze.cn/open/docs/developer_guides/create_conversation and the pages next to it). */
export const CONVERSATION_ROUTES: readonly ApiRoute[] = [
  ['POST', /^\/v1\/conversation\/create$/, (ctx) => {
    const body = bodyOf(ctx);
    const c = ctx.store.createConversation(ctx.owner, String(body.bot_id ?? ''), (body.meta_data ?? {}) as Record<string, string>);
    if (typeof body.name === 'string') c.name = body.name;
    for (const msg of (body.messages ?? []) as Array<Record<string, unknown>>) addMessage(c, msg);
    ok(ctx, conversationView(c));
  }],
  ['GET', /^\/v1\/conversation\/retrieve$/, (ctx) => ok(ctx, conversationView(owned(ctx, param(ctx, 'conversation_id'))))],
  ['GET', /^\/v1\/conversations$/, (ctx) => {
    const botId = param(ctx, 'bot_id');
    if (!botId) throw new ApiError(4000, 'bot_id is required');
    const mine = [...ctx.store.conversations.values()].filter((c) => c.bot_id === botId && sameOwner(c.owner, ctx.owner));
    ok(ctx, { conversations: mine.map(conversationView), has_more: false });
  }],
  ['PUT', /^\/v1\/conversations\/([^/]+)$/, (ctx, m) => {
    const c = owned(ctx, m[1]);
    const name = bodyOf(ctx).name;
    if (typeof name === 'string') c.name = name;
    ok(ctx, conversationView(c));
  }],
  ['DELETE', /^\/v1\/conversations\/([^/]+)$/, (ctx, m) => {
    const c = owned(ctx, m[1]);
    ctx.store.conversations.delete(c.id);
    ok(ctx, undefined);
  }],
  ['POST', /^\/v1\/conversations\/([^/]+)\/clear$/, (ctx, m) => {
    const c = owned(ctx, m[1]);
    c.messages = [];
    ok(ctx, { id: newId(), conversation_id: c.id });
  }],
  ['POST', /^\/v1\/conversation\/message\/create$/, (ctx) => ok(ctx, messageView(addMessage(owned(ctx, param(ctx, 'conversation_id')), bodyOf(ctx))))],
  ['POST', /^\/v1\/conversation\/message\/list$/, (ctx) => {
    const c = owned(ctx, param(ctx, 'conversation_id'));
    const body = bodyOf(ctx);
    const chatId = typeof body.chat_id === 'string' ? body.chat_id : undefined;
    const listed = c.messages.filter((x) => !chatId || x.chat_id === chatId).map(messageView);
    ok(ctx, body.order === 'asc' ? listed : listed.reverse(), { first_id: listed[0]?.id ?? '', last_id: listed.at(-1)?.id ?? '', has_more: false });
  }],
  // GET in the JS, Python and Go SDKs; POST with query parameters in the Java one.
  ['GET|POST', /^\/v1\/conversation\/message\/retrieve$/, (ctx) => ok(ctx, messageView(ownedMessage(ctx, param(ctx, 'conversation_id'), param(ctx, 'message_id')).message))],
  ['POST', /^\/v1\/conversation\/message\/modify$/, (ctx) => {
    const { message } = ownedMessage(ctx, param(ctx, 'conversation_id'), param(ctx, 'message_id'));
    const body = bodyOf(ctx);
    if (body.content !== undefined) message.content = String(body.content);
    if (typeof body.content_type === 'string') message.content_type = body.content_type;
    if (body.meta_data !== undefined) message.meta_data = body.meta_data as Record<string, string>;
    message.updated_at = Math.max(message.updated_at, Math.floor(Date.now() / 1000));
    // Coze answers this one with `message`, not `data` (the JS SDK reads `response.message`).
    ok(ctx, undefined, { message: messageView(message) });
  }],
  ['POST', /^\/v1\/conversation\/message\/delete$/, (ctx) => {
    const { conversation, message } = ownedMessage(ctx, param(ctx, 'conversation_id'), param(ctx, 'message_id'));
    conversation.messages = conversation.messages.filter((x) => x !== message);
    ok(ctx, messageView(message));
  }],
  ['POST', /^\/v1\/conversations\/([^/]+)\/messages\/([^/]+)\/feedback$/, (ctx, m) => {
    const { message } = ownedMessage(ctx, m[1], m[2]);
    const body = bodyOf(ctx);
    if (body.feedback_type !== 'like' && body.feedback_type !== 'unlike') throw new ApiError(4000, 'feedback_type must be like or unlike');
    message.feedback = { feedback_type: body.feedback_type, ...(typeof body.comment === 'string' ? { comment: body.comment } : {}) };
    ok(ctx, undefined);
  }],
  ['DELETE', /^\/v1\/conversations\/([^/]+)\/messages\/([^/]+)\/feedback$/, (ctx: ApiContext, m) => {
    const { message } = ownedMessage(ctx, m[1], m[2]);
    delete message.feedback;
    ok(ctx, undefined);
  }],
];
