import type { ServerResponse } from 'node:http';
import type { Pacing, StreamFault } from './sse.js';
import { nowSeconds, newId, sameOwner, type Conversation, type Message, type Owner, type Store } from './store.js';
import type { BotBehaviour, WorkflowBehaviour } from './types.js';

/** One API request as the emulator's handlers see it. */
export interface ApiContext {
  method: string;
  path: string;
  query: URLSearchParams;
  /** The JSON body, parsed; undefined when there was none. */
  body: unknown;
  /** The file part of a multipart request (uploads, transcriptions). */
  upload: { fileName: string; bytes: number; head: Buffer } | undefined;
  owner: Owner;
  /** A channel token's scope: the only bots it may chat with (undefined: any). */
  allowedBots?: ReadonlySet<string> | undefined;
  res: ServerResponse;
  store: Store;
  pacing: Pacing;
  logId: string;
  /** Fault injection for the SSE stream this request answers, if any. */
  fault: StreamFault | undefined;
  settings: ApiSettings;
}

export interface ApiSettings {
  retrievesBeforeCompletion: number;
  bot(botId: string): BotBehaviour;
  workflow(workflowId: string): WorkflowBehaviour;
}

export type Json = Record<string, unknown>;

/** A Coze business error: HTTP 200 with `{code, msg}` (Coze docs: https://www.coze.cn/open/docs/developer_guides/coze_error_codes). */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    msg: string,
  ) {
    super(msg);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, logId: string): void {
  const text = JSON.stringify(body);
  // A Set-Cookie, and the permissive CORS headers Coze's API answers with: the gateway must strip
  // both before they reach the caller (it alone decides CORS for its own origin).
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'x-tt-logid': logId,
    'set-cookie': 'coze_session=emulator; Path=/',
    'access-control-allow-origin': '*',
    'access-control-allow-credentials': 'true',
  });
  res.end(text);
}

/** `{code: 0, msg: "", data, ...extra, detail: {logid}}`: Coze's success envelope. */
export function ok(ctx: ApiContext, data: unknown, extra: Json = {}): void {
  sendJson(ctx.res, 200, { code: 0, msg: '', ...(data === undefined ? {} : { data }), ...extra, detail: { logid: ctx.logId } }, ctx.logId);
}

/**
 * A channel app's scoped token chats only with the scope's bots. Coze's answer to any other
 * bot is not documented; 4101 is its code for a token without the permission (coze_error_codes),
 * and the message is the emulator's.
 */
export function checkBotInScope(allowedBots: ReadonlySet<string> | undefined, botId: string): void {
  if (allowedBots && botId !== '' && !allowedBots.has(botId)) throw new ApiError(4101, `the token's scope does not include bot ${botId}`);
}

export function bodyOf(ctx: ApiContext): Json {
  return typeof ctx.body === 'object' && ctx.body !== null && !Array.isArray(ctx.body) ? (ctx.body as Json) : {};
}

export function param(ctx: ApiContext, name: string): string | undefined {
  return ctx.query.get(name) ?? undefined;
}

/** The caller's own conversation; another session's is 4101, exactly the isolation the gateway exists for. */
export function owned(ctx: ApiContext, id: string | undefined): Conversation {
  const c = ctx.store.conversations.get(id ?? '');
  if (!c) throw new ApiError(4200, 'conversation not found');
  if (!sameOwner(c.owner, ctx.owner)) throw new ApiError(4101, 'no permission to access this resource');
  return c;
}

export function ownedMessage(ctx: ApiContext, conversationId: string | undefined, messageId: string | undefined): { conversation: Conversation; message: Message } {
  const conversation = owned(ctx, conversationId);
  const message = conversation.messages.find((m) => m.id === messageId);
  if (!message) throw new ApiError(4200, 'message not found');
  return { conversation, message };
}

export function conversationView(c: Conversation): Json {
  return { id: c.id, bot_id: c.bot_id, created_at: c.created_at, name: c.name, meta_data: c.meta_data, last_section_id: c.id };
}

export function messageView(m: Message): Json {
  const { feedback: _feedback, ...view } = m;
  return { ...view, section_id: m.conversation_id };
}

export function addMessage(c: Conversation, msg: Json, extra: Partial<Message> = {}): Message {
  const at = nowSeconds();
  const message: Message = {
    id: newId(),
    conversation_id: c.id,
    bot_id: c.bot_id,
    role: String(msg.role ?? 'user'),
    type: String(msg.type ?? (msg.role === 'assistant' ? 'answer' : 'question')),
    content: typeof msg.content === 'string' ? msg.content : JSON.stringify(msg.content ?? ''),
    content_type: String(msg.content_type ?? 'text'),
    meta_data: (msg.meta_data ?? {}) as Record<string, string>,
    created_at: at,
    updated_at: at,
    ...extra,
  };
  c.messages.push(message);
  return message;
}
