import { addMessage, ApiError, messageView, type Json } from './api-context.js';
import { newId, nowSeconds, type Chat, type Conversation, type Message, type Owner, type Store } from './store.js';
import type { BotBehaviour } from './types.js';

/**
 * What a bot does with one chat, shared by the HTTP chat API (SSE or polled) and the realtime
 * `/v1/chat` socket. Each behaviour ends the way Coze ends such a chat (https://www.coze.cn/open/docs/developer_guides/chat_v3):
 * completed with usage, `requires_action` with a tool call, `failed` with `last_error`, or a
 * stream-level `error` event.
 */

/** One event of a chat, before it is framed as SSE or as a WebSocket event. */
export interface ChatStep {
  event: string;
  data: unknown;
}

/** The stream-level error the `error` bot sends (its code is one Coze documents: 4013 model error). */
export const BOT_STREAM_ERROR = { code: 4013, msg: 'The model failed to answer (emulated error bot).' } as const;
const FAILURE = { code: 5000, msg: 'The bot failed to answer (emulated failing bot).' } as const;

export function chatView(chat: Chat): Json {
  const { owner: _owner, question: _question, retrievesLeft: _retrievesLeft, user_id: _userId, toolAnswer: _toolAnswer, ...view } = chat;
  return { ...view, section_id: chat.conversation_id };
}

/**
 * Starts a chat in `conversation` with the user's messages. Like Coze, one conversation runs one
 * chat at a time (4016).
 */
export function openChat(store: Store, owner: Owner, conversation: Conversation, input: { botId: string; userId: string; messages: Json[]; retrievesLeft: number }): Chat {
  for (const other of store.chats.values()) {
    if (other.conversation_id === conversation.id && other.status === 'in_progress') throw new ApiError(4016, 'a chat is already running in this conversation');
  }
  const chat: Chat = {
    id: newId(),
    conversation_id: conversation.id,
    bot_id: input.botId,
    user_id: input.userId,
    status: 'in_progress',
    owner,
    created_at: nowSeconds(),
    last_error: { code: 0, msg: '' },
    usage: { token_count: 0, output_count: 0, input_count: 0 },
    question: '',
    retrievesLeft: input.retrievesLeft,
  };
  for (const msg of input.messages) addMessage(conversation, msg, { chat_id: chat.id });
  chat.question = String(input.messages.at(-1)?.content ?? '');
  store.chats.set(chat.id, chat);
  return chat;
}

/** Runs the bot to the chat's end state; returns the steps a stream shows after `in_progress`. */
export function finishChat(conversation: Conversation, chat: Chat, behaviour: BotBehaviour): ChatStep[] {
  if (chat.toolAnswer !== undefined) {
    const text = chat.toolAnswer;
    delete chat.toolAnswer;
    return answer(conversation, chat, text);
  }
  const at = nowSeconds();
  if (behaviour === 'fail' || behaviour === 'error') {
    Object.assign(chat, { status: 'failed', failed_at: at, last_error: { ...FAILURE } });
    return behaviour === 'error' ? [{ event: 'error', data: { ...BOT_STREAM_ERROR } }] : [{ event: 'conversation.chat.failed', data: chatView(chat) }];
  }
  if (behaviour === 'tool') {
    const call = { id: `call_${newId()}`, type: 'function' as const, function: { name: 'get_weather', arguments: JSON.stringify({ city: chat.question }) } };
    const message = addMessage(conversation, { role: 'assistant', type: 'function_call', content: JSON.stringify({ name: call.function.name, arguments: JSON.parse(call.function.arguments) as unknown }) }, { chat_id: chat.id });
    Object.assign(chat, { status: 'requires_action', required_action: { type: 'submit_tool_outputs', submit_tool_outputs: { tool_calls: [call] } } });
    return [
      { event: 'conversation.message.completed', data: messageView(message) },
      { event: 'conversation.chat.requires_action', data: chatView(chat) },
    ];
  }
  return answer(conversation, chat, `Echo: ${chat.question}`);
}

/**
 * The tool outputs arrived: the chat runs again (`in_progress`) and answers with them when it
 * finishes (finishChat).
 */
export function acceptToolOutputs(conversation: Conversation, chat: Chat, outputs: unknown, retrievesLeft: number): void {
  const calls = chat.required_action?.submit_tool_outputs.tool_calls ?? [];
  if (chat.status !== 'requires_action') throw new ApiError(4000, 'the chat is not waiting for tool outputs');
  const given = new Map((Array.isArray(outputs) ? (outputs as Json[]) : []).map((o) => [String(o.tool_call_id), String(o.output ?? '')]));
  if (!calls.every((call) => given.has(call.id))) throw new ApiError(4000, 'tool_outputs must answer every tool call');
  for (const call of calls) addMessage(conversation, { role: 'assistant', type: 'tool_output', content: given.get(call.id) }, { chat_id: chat.id });
  delete chat.required_action;
  Object.assign(chat, { status: 'in_progress', retrievesLeft, toolAnswer: `Tool said: ${calls.map((call) => given.get(call.id)).join(', ')}` });
}

function answer(conversation: Conversation, chat: Chat, text: string): ChatStep[] {
  const reply = addMessage(conversation, { role: 'assistant', type: 'answer', content: text }, { chat_id: chat.id });
  const finish = addMessage(conversation, { role: 'assistant', type: 'verbose', content: JSON.stringify({ msg_type: 'generate_answer_finish', data: '{"finish_reason":0,"FinData":""}', from_module: null, from_unit: null }) }, { chat_id: chat.id });
  // Deterministic counts, reported the way Coze reports them.
  const input = chat.question.length;
  Object.assign(chat, { status: 'completed', completed_at: nowSeconds(), usage: { token_count: input + text.length, output_count: text.length, input_count: input } });
  const pieces: Message[] = (text.match(/.{1,4}/gs) ?? [text]).map((content) => ({ ...reply, content }));
  return [
    ...pieces.map((piece) => ({ event: 'conversation.message.delta', data: messageView(piece) })),
    { event: 'conversation.message.completed', data: messageView(reply) },
    { event: 'conversation.message.completed', data: messageView(finish) },
    { event: 'conversation.chat.completed', data: chatView(chat) },
  ];
}
