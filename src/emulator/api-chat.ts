import { ApiError, bodyOf, checkBotInScope, messageView, ok, owned, param, type ApiContext, type Json } from './api-context.js';
import type { ApiRoute } from './api.js';
import { acceptToolOutputs, chatView, finishChat, openChat, type ChatStep } from './chat-runs.js';
import { chatEvent, writeStream } from './sse.js';
import { sameOwner, type Chat, type Conversation } from './store.js';

/**
 * `/v3/chat` and its companions (Coze docs: https://www.coze.cn/open/docs/developer_guides/chat_v3), and the
 * chatflow `/v1/workflows/chat`, which answers in the same framing.
 */
export const CHAT_ROUTES: readonly ApiRoute[] = [
  ['POST', /^\/v3\/chat$/, (ctx) => {
    const body = bodyOf(ctx);
    if (typeof body.user_id !== 'string' || body.user_id === '') throw new ApiError(4000, 'user_id is required');
    const conversationId = param(ctx, 'conversation_id');
    return runChat(ctx, body, conversationId ? owned(ctx, conversationId) : undefined, body.user_id, '"[DONE]"');
  }],
  // GET in the Go and Java SDKs; POST in the JS and Python ones (their generator overrides it).
  ['GET|POST', /^\/v3\/chat\/retrieve$/, (ctx) => {
    const { conversation, chat } = ownedChat(ctx, param(ctx, 'conversation_id'), param(ctx, 'chat_id'));
    if (chat.status === 'in_progress' && chat.retrievesLeft > 0) {
      chat.retrievesLeft -= 1;
      if (chat.retrievesLeft === 0) finishChat(conversation, chat, ctx.settings.bot(chat.bot_id));
    }
    ok(ctx, chatView(chat));
  }],
  ['GET', /^\/v3\/chat\/message\/list$/, (ctx) => {
    const { conversation, chat } = ownedChat(ctx, param(ctx, 'conversation_id'), param(ctx, 'chat_id'));
    ok(ctx, conversation.messages.filter((m) => m.chat_id === chat.id && m.type !== 'question').map(messageView));
  }],
  ['POST', /^\/v3\/chat\/cancel$/, (ctx) => {
    const body = bodyOf(ctx);
    const { chat } = ownedChat(ctx, String(body.conversation_id ?? ''), String(body.chat_id ?? ''));
    if (chat.status === 'completed' || chat.status === 'failed' || chat.status === 'canceled') throw new ApiError(4104, 'the chat has already ended and cannot be cancelled');
    chat.status = 'canceled';
    delete chat.required_action;
    ok(ctx, chatView(chat));
  }],
  ['POST', /^\/v3\/chat\/submit_tool_outputs$/, (ctx) => {
    const { conversation, chat } = ownedChat(ctx, param(ctx, 'conversation_id'), param(ctx, 'chat_id'));
    const body = bodyOf(ctx);
    const stream = body.stream === true;
    acceptToolOutputs(conversation, chat, body.tool_outputs, stream ? 0 : ctx.settings.retrievesBeforeCompletion);
    if (!stream) {
      if (chat.retrievesLeft === 0) finishChat(conversation, chat, ctx.settings.bot(chat.bot_id));
      return ok(ctx, chatView(chat));
    }
    const steps = [{ event: 'conversation.chat.in_progress', data: chatView(chat) }, ...finishChat(conversation, chat, ctx.settings.bot(chat.bot_id))];
    return streamSteps(ctx, steps, '"[DONE]"');
  }],
  ['POST', /^\/v1\/workflows\/chat$/, (ctx) => {
    const body = bodyOf(ctx);
    if (!Array.isArray(body.additional_messages)) throw new ApiError(4000, 'additional_messages is required');
    const ext = (body.ext ?? {}) as Json;
    const conversationId = typeof body.conversation_id === 'string' && body.conversation_id !== '' ? body.conversation_id : undefined;
    const debug = JSON.stringify({ debug_url: `https://www.coze.cn/work_flow?execute_id=${chatDebugId(ctx)}&workflow_id=${String(body.workflow_id ?? '')}` });
    return runChat(ctx, { ...body, stream: true }, conversationId ? owned(ctx, conversationId) : undefined, String(ext.user_id ?? ''), debug);
  }],
];

function chatDebugId(ctx: ApiContext): string {
  return ctx.logId.slice(-12);
}

async function runChat(ctx: ApiContext, body: Json, existing: Conversation | undefined, userId: string, done: string): Promise<void> {
  const botId = String(body.bot_id ?? '');
  checkBotInScope(ctx.allowedBots, botId);
  const conversation = existing ?? ctx.store.createConversation(ctx.owner, botId);
  const stream = body.stream === true;
  if (!stream && body.auto_save_history === false) throw new ApiError(4007, 'stream=false requires auto_save_history=true');
  const messages = Array.isArray(body.additional_messages) ? (body.additional_messages as Json[]) : [];
  const chat = openChat(ctx.store, ctx.owner, conversation, { botId, userId, messages, retrievesLeft: stream ? 0 : ctx.settings.retrievesBeforeCompletion });
  const behaviour = ctx.settings.bot(botId);
  if (!stream) {
    // Coze answers at once with the chat in progress; the client polls /v3/chat/retrieve.
    if (chat.retrievesLeft === 0) finishChat(conversation, chat, behaviour);
    return ok(ctx, chatView(chat));
  }
  const inProgress = chatView(chat);
  const steps: ChatStep[] = [
    { event: 'conversation.chat.created', data: { ...inProgress, status: 'created' } },
    { event: 'conversation.chat.in_progress', data: inProgress },
    ...finishChat(conversation, chat, behaviour),
  ];
  return streamSteps(ctx, steps, done);
}

/** Chat framing (`event:`/`data:` without spaces, as recorded); a stream-level error is the last event. */
function streamSteps(ctx: ApiContext, steps: ChatStep[], done: string): Promise<void> {
  const frames = steps.map((s) => chatEvent(s.event, s.data));
  if (steps.at(-1)?.event !== 'error') frames.push(chatEvent('done', done));
  return writeStream(ctx.res, frames, { pacing: ctx.pacing, logId: ctx.logId, fault: ctx.fault });
}

function ownedChat(ctx: ApiContext, conversationId: string | undefined, chatId: string | undefined): { conversation: Conversation; chat: Chat } {
  const conversation = owned(ctx, conversationId);
  const chat = ctx.store.chats.get(chatId ?? '');
  if (!chat || chat.conversation_id !== conversation.id) throw new ApiError(4200, 'chat not found');
  if (!sameOwner(chat.owner, ctx.owner)) throw new ApiError(4101, 'no permission to access this resource');
  return { conversation, chat };
}
