import type { ServerResponse } from 'node:http';
import { chatEvent, workflowEvent, writeStream, type Pacing } from './sse.js';
import { newId, sameOwner, type Chat, type Conversation, type Message, type Owner, type Store } from './store.js';

export interface ApiContext {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
  owner: Owner;
  res: ServerResponse;
  store: Store;
  pacing: Pacing;
  logId: string;
  /** Fault injection: cut, or stall, SSE streams after this many events. */
  cutAfter: number | undefined;
  stallAfter: number | undefined;
}

type Json = Record<string, unknown>;

export function sendJson(res: ServerResponse, status: number, body: unknown, logId: string): void {
  const text = JSON.stringify(body);
  // A Set-Cookie that the gateway must strip before it reaches the caller.
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), 'x-tt-logid': logId, 'set-cookie': 'coze_session=emulator; Path=/' });
  res.end(text);
}

class ApiError extends Error {
  constructor(
    readonly code: number,
    msg: string,
  ) {
    super(msg);
  }
}

const now = () => Math.floor(Date.now() / 1000);

/**
 * Coze's end-user API (see src/policy/default-routes.ts) on in-memory state. Every resource belongs to
 * one (app, session_name): another session gets code 4101, exactly the isolation the gateway
 * exists to provide.
 */
export async function handleApi(ctx: ApiContext): Promise<void> {
  const ok = (data: unknown, extra: Json = {}) => sendJson(ctx.res, 200, { code: 0, msg: '', data, ...extra, detail: { logid: ctx.logId } }, ctx.logId);
  try {
    const route = `${ctx.method} ${ctx.path}`;
    const body = (typeof ctx.body === 'object' && ctx.body !== null ? ctx.body : {}) as Json;
    const q = (name: string) => ctx.query.get(name) ?? undefined;
    let m: RegExpExecArray | null;

    if (route === 'POST /v1/conversation/create') {
      const c = ctx.store.createConversation(ctx.owner, String(body.bot_id ?? ''), (body.meta_data ?? {}) as Record<string, string>);
      for (const msg of (body.messages ?? []) as Json[]) addMessage(c, msg);
      return ok(view(c));
    }
    if (route === 'GET /v1/conversation/retrieve') return ok(view(owned(ctx, q('conversation_id'))));
    if (route === 'GET /v1/conversations') {
      const botId = q('bot_id');
      if (!botId) throw new ApiError(4000, 'bot_id is required');
      const mine = [...ctx.store.conversations.values()].filter((c) => c.bot_id === botId && sameOwner(c.owner, ctx.owner));
      return ok({ conversations: mine.map(view), has_more: false });
    }
    if ((m = /^(PUT|DELETE) \/v1\/conversations\/([^/]+)$/.exec(route))) {
      const c = owned(ctx, m[2]);
      if (m[1] === 'DELETE') {
        ctx.store.conversations.delete(c.id);
        return ok({});
      }
      c.name = String(body.name ?? c.name);
      return ok(view(c));
    }
    if ((m = /^POST \/v1\/conversations\/([^/]+)\/clear$/.exec(route))) {
      const c = owned(ctx, m[1]);
      c.messages = [];
      return ok({ id: newId(), conversation_id: c.id });
    }
    if (route === 'POST /v1/conversation/message/create') return ok(addMessage(owned(ctx, q('conversation_id')), body));
    if (route === 'POST /v1/conversation/message/list') {
      const c = owned(ctx, q('conversation_id'));
      return ok(c.messages, { first_id: c.messages[0]?.id ?? '', last_id: c.messages.at(-1)?.id ?? '', has_more: false });
    }
    if (route === 'GET /v1/conversation/message/retrieve') {
      const c = owned(ctx, q('conversation_id'));
      const msg = c.messages.find((x) => x.id === q('message_id'));
      if (!msg) throw new ApiError(4200, 'message not found');
      return ok(msg);
    }
    if (route === 'POST /v3/chat') return chat(ctx, body, ok);
    if (route === 'GET /v3/chat/retrieve' || route === 'GET /v3/chat/message/list') {
      owned(ctx, q('conversation_id'));
      const c = ctx.store.chats.get(q('chat_id') ?? '');
      if (!c || !sameOwner(c.owner, ctx.owner)) throw new ApiError(c ? 4101 : 4200, c ? 'no permission to access this resource' : 'chat not found');
      if (route === 'GET /v3/chat/retrieve') return ok(c);
      return ok(ctx.store.conversations.get(c.conversation_id)?.messages.filter((x) => x.chat_id === c.id) ?? []);
    }
    if (route === 'POST /v3/chat/cancel') {
      owned(ctx, String(body.conversation_id ?? ''));
      const c = ctx.store.chats.get(String(body.chat_id ?? ''));
      if (!c || !sameOwner(c.owner, ctx.owner)) throw new ApiError(4200, 'chat not found');
      if (c.status === 'completed') throw new ApiError(4104, 'the chat has already completed and cannot be cancelled');
      c.status = 'canceled';
      return ok(c);
    }
    if (route === 'POST /v1/workflow/run') {
      const ext = (body.ext ?? {}) as Json;
      return sendJson(ctx.res, 200, { code: 0, msg: '', data: JSON.stringify({ output: `ran ${String(body.workflow_id)}`, user_id: ext.user_id ?? null }), execute_id: newId(), debug_url: '', usage: { input_count: 1, output_count: 1, token_count: 2 }, detail: { logid: ctx.logId } }, ctx.logId);
    }
    if (route === 'POST /v1/workflow/stream_run') {
      const ext = (body.ext ?? {}) as Json;
      const frames = ['Hello', ' from', ' the workflow'].map((content, i) =>
        workflowEvent(i, 'Message', { content, node_title: 'End', node_seq_id: String(i), node_is_finish: i === 2, ext: { user_id: ext.user_id ?? null } }),
      );
      frames.push(workflowEvent(frames.length, 'Done', {}));
      return writeStream(ctx.res, frames, ctx.pacing, ctx.cutAfter, ctx.stallAfter);
    }
    if (route === 'POST /v1/workflows/chat') return chat(ctx, { ...body, stream: true, user_id: (body.ext as Json | undefined)?.user_id ?? 'workflow' }, ok);
    if (route === 'GET /v1/files/retrieve') {
      const f = ctx.store.files.get(q('file_id') ?? '');
      if (!f) throw new ApiError(4200, 'file not found');
      if (!sameOwner(f.owner, ctx.owner)) throw new ApiError(4101, 'no permission to access this resource');
      return ok({ id: f.id, bytes: f.bytes, file_name: f.file_name, created_at: f.created_at });
    }
    if (route === 'GET /v1/variables' || route === 'PUT /v1/variables') {
      const source = route.startsWith('GET') ? Object.fromEntries(ctx.query) : body;
      const botId = String(source.bot_id ?? source.app_id ?? '');
      const uid = source.connector_uid;
      if (!botId || typeof uid !== 'string' || uid === '') throw new ApiError(4000, 'bot_id (or app_id) and connector_uid are required');
      const vars = ctx.store.variablesFor(ctx.owner, botId, uid);
      if (route.startsWith('PUT')) {
        for (const item of (body.data ?? []) as Json[]) vars.set(String(item.keyword), String(item.value));
        return ok({});
      }
      const keywords = q('keywords')?.split(',');
      const items = [...vars].filter(([k]) => !keywords || keywords.includes(k)).map(([keyword, value]) => ({ keyword, value, create_time: now(), update_time: now() }));
      return ok({ items });
    }
    if ((m = /^GET \/v1\/bots\/([^/]+)$/.exec(route)) || route === 'GET /v1/bot/get_online_info') {
      const botId = m?.[1] ?? q('bot_id') ?? '';
      return ok({ bot_id: botId, name: `Emulated bot ${botId}`, description: 'A bot served by the Coze emulator', version: '1', onboarding_info: { prologue: 'Hello!' } });
    }
    if (route === 'POST /v1/audio/rooms') return ok({ room_id: newId(), app_id: 'rtc', token: 'rtc-token', uid: body.uid ?? null });
    sendJson(ctx.res, 404, { code: 4200, msg: 'route not found' }, ctx.logId);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    sendJson(ctx.res, 200, { code: err.code, msg: err.message, detail: { logid: ctx.logId } }, ctx.logId);
  }
}

function owned(ctx: ApiContext, id: string | undefined): Conversation {
  const c = ctx.store.conversations.get(id ?? '');
  if (!c) throw new ApiError(4200, 'conversation not found');
  if (!sameOwner(c.owner, ctx.owner)) throw new ApiError(4101, 'no permission to access this resource');
  return c;
}

function view(c: Conversation): Json {
  return { id: c.id, bot_id: c.bot_id, created_at: c.created_at, name: c.name, meta_data: c.meta_data, last_section_id: c.id };
}

function addMessage(c: Conversation, msg: Json, extra: Partial<Message> = {}): Message {
  const message: Message = {
    id: newId(),
    conversation_id: c.id,
    role: String(msg.role ?? 'user'),
    type: String(msg.type ?? (msg.role === 'assistant' ? 'answer' : 'question')),
    content: String(msg.content ?? ''),
    content_type: String(msg.content_type ?? 'text'),
    created_at: now(),
    ...extra,
  };
  c.messages.push(message);
  return message;
}

async function chat(ctx: ApiContext, body: Json, ok: (data: unknown) => void): Promise<void> {
  if (typeof body.user_id !== 'string' || body.user_id === '') throw new ApiError(4000, 'user_id is required');
  const conversationId = ctx.query.get('conversation_id');
  const conversation = conversationId ? owned(ctx, conversationId) : ctx.store.createConversation(ctx.owner, String(body.bot_id ?? ''));
  const stream = body.stream === true;
  if (!stream && body.auto_save_history === false) throw new ApiError(4007, 'stream=false requires auto_save_history=true');
  const chatId = newId();
  const userMessages = (body.additional_messages ?? []) as Json[];
  for (const msg of userMessages) addMessage(conversation, msg, { chat_id: chatId, user_id: body.user_id });
  const question = String(userMessages.at(-1)?.content ?? '');
  const answer = `Echo: ${question}`;
  addMessage(conversation, { role: 'assistant', type: 'answer', content: answer }, { chat_id: chatId, user_id: body.user_id });
  const record: Chat = { id: chatId, conversation_id: conversation.id, bot_id: String(body.bot_id ?? ''), user_id: body.user_id, status: 'completed', owner: ctx.owner, created_at: now(), completed_at: now() };
  ctx.store.chats.set(chatId, record);
  const usage = { token_count: 10, output_count: 5, input_count: 5 };
  if (!stream) return ok({ ...record, owner: undefined, usage });

  const chatObject = { id: chatId, conversation_id: conversation.id, bot_id: record.bot_id, created_at: record.created_at, status: 'in_progress' };
  const pieces = answer.match(/.{1,4}/gs) ?? [answer];
  const messageBase = { id: newId(), conversation_id: conversation.id, bot_id: record.bot_id, chat_id: chatId, role: 'assistant', type: 'answer', content_type: 'text' };
  const frames = [
    chatEvent('conversation.chat.created', { ...chatObject, status: 'created' }),
    chatEvent('conversation.chat.in_progress', chatObject),
    ...pieces.map((content) => chatEvent('conversation.message.delta', { ...messageBase, content })),
    chatEvent('conversation.message.completed', { ...messageBase, content: answer }),
    chatEvent('conversation.chat.completed', { ...chatObject, status: 'completed', usage }),
    chatEvent('done', '"[DONE]"'),
  ];
  return writeStream(ctx.res, frames, ctx.pacing, ctx.cutAfter, ctx.stallAfter);
}
