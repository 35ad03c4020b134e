import { randomUUID } from 'node:crypto';
import { ApiError, checkBotInScope, type ApiSettings, type Json } from './api-context.js';
import { speechAudio, transcribe } from './api-audio.js';
import { acceptToolOutputs, chatView, finishChat, openChat, type ChatStep } from './chat-runs.js';
import { sameOwner, type Chat, type Conversation, type Owner, type Store } from './store.js';

/**
 * The realtime WebSocket APIs (https://www.coze.cn/open/docs/developer_guides/streaming_chat_api), event for event as coze-js's
 * `resources/websockets/types.ts` and cozepy's `websockets/**` name them: every server event is
 * `{id, event_type, data?, detail: {logid}}`; a session starts with its `*.created` event;
 * updates are confirmed with `*.updated`; audio travels base64-encoded in JSON text events.
 * The emulator "hears" audio that is UTF-8 text as that text, and "speaks" speechAudio().
 */
export interface RealtimeContext {
  path: string;
  query: URLSearchParams;
  owner: Owner;
  /** A channel token's scope: the only bots it may chat with (undefined: any). */
  allowedBots?: ReadonlySet<string> | undefined;
  store: Store;
  settings: ApiSettings;
  logId: string;
  send(event: Json): void;
}

export interface RealtimeSession {
  /** One client frame: a JSON event, text or binary. */
  receive(frame: Buffer): void;
}

export function startRealtimeSession(ctx: RealtimeContext): RealtimeSession {
  const reply = (eventType: string, data?: unknown, extra: Json = {}) =>
    ctx.send({ id: randomUUID(), event_type: eventType, ...(data === undefined ? {} : { data }), detail: { logid: ctx.logId, ...extra } });
  const fail = (code: number, msg: string, origin: string) => reply('error', { code, msg }, { origin_message: origin.slice(0, 1024) });
  const handler = HANDLERS[ctx.path] as (ctx: RealtimeContext, reply: Reply) => Handler;
  const handle = handler(ctx, reply);
  reply(CREATED[ctx.path] as string);

  return {
    receive(frame) {
      const text = frame.toString('utf8');
      let event: Json;
      try {
        event = JSON.parse(text) as Json;
      } catch {
        return fail(4000, 'the event is not valid JSON', text);
      }
      if (typeof event !== 'object' || event === null || typeof event.event_type !== 'string') return fail(4000, 'the event has no event_type', text);
      const data = typeof event.data === 'object' && event.data !== null ? (event.data as Json) : {};
      try {
        if (!handle(event.event_type, data)) fail(4000, `unsupported event_type ${event.event_type} on ${ctx.path}`, text);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        fail(err.code, err.message, text);
      }
    },
  };
}

type Reply = (eventType: string, data?: unknown) => void;
/** Handles one client event; false when this path does not know it. */
type Handler = (eventType: string, data: Json) => boolean;

const CREATED: Readonly<Record<string, string>> = {
  '/v1/chat': 'chat.created',
  '/v1/audio/speech': 'speech.created',
  '/v1/audio/transcriptions': 'transcriptions.created',
  '/v1/audio/simult_interpretation': 'simult_interpretation.created',
};

/** Audio appended with `input_audio_buffer.append` (base64), until complete or clear. */
function audioBuffer() {
  let chunks: Buffer[] = [];
  return {
    append: (data: Json) => void chunks.push(Buffer.from(String(data.delta ?? ''), 'base64')),
    clear: () => void (chunks = []),
    take(): string {
      const audio = Buffer.concat(chunks);
      chunks = [];
      return transcribe(audio, audio.length);
    },
  };
}

/** Splits audio into base64 deltas of at most 4 KiB, as a streaming answer arrives. */
function audioDeltas(audio: Buffer): string[] {
  const deltas: string[] = [];
  for (let i = 0; i < audio.length; i += 4096) deltas.push(audio.subarray(i, i + 4096).toString('base64'));
  return deltas;
}

const HANDLERS: Readonly<Record<string, (ctx: RealtimeContext, reply: Reply) => Handler>> = {
  '/v1/chat': (ctx, reply) => {
    const audio = audioBuffer();
    const config: Json = { chat_config: {}, input_audio: { format: 'pcm', codec: 'pcm', sample_rate: 24000, channel: 1, bit_depth: 16 }, output_audio: { codec: 'pcm', pcm_config: { sample_rate: 24000 }, speech_rate: 0, voice_id: '' } };
    const botId = ctx.query.get('bot_id') ?? '';
    let conversation: Conversation | undefined;
    let running: Chat | undefined;

    const chatConfig = () => config.chat_config as Json;
    const conversationOf = (): Conversation => {
      const wanted = chatConfig().conversation_id;
      if (typeof wanted === 'string' && wanted !== '') {
        const c = ctx.store.conversations.get(wanted);
        if (!c) throw new ApiError(4200, 'conversation not found');
        if (!sameOwner(c.owner, ctx.owner)) throw new ApiError(4101, 'no permission to access this resource');
        return c;
      }
      return (conversation ??= ctx.store.createConversation(ctx.owner, botId));
    };
    const play = (steps: ChatStep[]) => {
      for (const step of steps) {
        reply(step.event, step.data);
        const message = step.data as Json;
        // The answer is spoken as well as written.
        if (step.event === 'conversation.message.completed' && message.type === 'answer') {
          for (const delta of audioDeltas(speechAudio(String(message.content), 'pcm'))) reply('conversation.audio.delta', { ...message, content: delta, content_type: 'audio' });
          reply('conversation.audio.completed', { ...message, content: '', content_type: 'audio' });
        }
      }
    };
    const chat = (question: Json) => {
      checkBotInScope(ctx.allowedBots, botId);
      const c = conversationOf();
      running = openChat(ctx.store, ctx.owner, c, { botId, userId: String(chatConfig().user_id ?? ''), messages: [question], retrievesLeft: 0 });
      const inProgress = chatView(running);
      reply('conversation.chat.created', { ...inProgress, status: 'created' });
      reply('conversation.chat.in_progress', inProgress);
      play(finishChat(c, running, ctx.settings.bot(botId)));
    };

    return (eventType, data) => {
      switch (eventType) {
        case 'chat.update':
          for (const key of Object.keys(data)) config[key] = typeof data[key] === 'object' && data[key] !== null ? { ...(config[key] as Json), ...(data[key] as Json) } : data[key];
          reply('chat.updated', config);
          return true;
        case 'input_audio_buffer.append':
          audio.append(data);
          return true;
        case 'input_audio_buffer.clear':
          audio.clear();
          reply('input_audio_buffer.cleared');
          return true;
        case 'input_audio_buffer.complete': {
          reply('input_audio_buffer.completed');
          const heard = audio.take();
          reply('conversation.audio_transcript.completed', { content: heard });
          chat({ role: 'user', content: heard, content_type: 'text' });
          return true;
        }
        case 'conversation.message.create':
          chat({ role: data.role ?? 'user', content: data.content ?? '', content_type: data.content_type ?? 'text' });
          return true;
        case 'conversation.chat.submit_tool_outputs': {
          if (!running || running.id !== data.chat_id) throw new ApiError(4200, 'chat not found');
          const c = ctx.store.conversations.get(running.conversation_id) as Conversation;
          acceptToolOutputs(c, running, data.tool_outputs, 0);
          reply('conversation.chat.in_progress', chatView(running));
          play(finishChat(c, running, ctx.settings.bot(botId)));
          return true;
        }
        case 'conversation.chat.cancel':
          if (running && (running.status === 'in_progress' || running.status === 'requires_action')) running.status = 'canceled';
          reply('conversation.chat.canceled');
          return true;
        case 'conversation.clear':
          conversationOf().messages = [];
          reply('conversation.cleared');
          return true;
        default:
          return false;
      }
    };
  },

  '/v1/audio/speech': (_ctx, reply) => {
    const config: Json = { output_audio: { codec: 'pcm', pcm_config: { sample_rate: 24000 }, speech_rate: 0, voice_id: '' } };
    let text = '';
    return (eventType, data) => {
      if (eventType === 'speech.update') {
        config.output_audio = { ...(config.output_audio as Json), ...((data.output_audio ?? {}) as Json) };
        reply('speech.updated', config);
      } else if (eventType === 'input_text_buffer.append') {
        text += String(data.delta ?? '');
      } else if (eventType === 'input_text_buffer.complete') {
        reply('input_text_buffer.completed');
        for (const delta of audioDeltas(speechAudio(text, 'pcm'))) reply('speech.audio.update', { delta });
        reply('speech.audio.completed');
        text = '';
      } else {
        return false;
      }
      return true;
    };
  },

  '/v1/audio/transcriptions': (_ctx, reply) => {
    const audio = audioBuffer();
    const config: Json = { input_audio: { format: 'pcm', codec: 'pcm', sample_rate: 24000, channel: 1, bit_depth: 16 } };
    return (eventType, data) => {
      if (eventType === 'transcriptions.update') {
        config.input_audio = { ...(config.input_audio as Json), ...((data.input_audio ?? {}) as Json) };
        reply('transcriptions.updated', config);
      } else if (eventType === 'input_audio_buffer.append') {
        audio.append(data);
      } else if (eventType === 'input_audio_buffer.clear') {
        audio.clear();
        reply('input_audio_buffer.cleared');
      } else if (eventType === 'input_audio_buffer.complete') {
        reply('input_audio_buffer.completed');
        const heard = audio.take();
        reply('transcriptions.message.update', { content: heard });
        reply('transcriptions.message.completed', { content: heard });
      } else {
        return false;
      }
      return true;
    };
  },

  '/v1/audio/simult_interpretation': (_ctx, reply) => {
    const audio = audioBuffer();
    const config: Json = {
      input_audio: { format: 'pcm', codec: 'pcm', sample_rate: 24000, channel: 1, bit_depth: 16 },
      output_audio: { codec: 'pcm', pcm_config: { sample_rate: 24000 }, speech_rate: 0, voice_id: '' },
      translate_config: { from: 'zh', to: 'en' },
    };
    return (eventType, data) => {
      if (eventType === 'simult_interpretation.update') {
        for (const key of ['input_audio', 'output_audio', 'translate_config']) config[key] = { ...(config[key] as Json), ...((data[key] ?? {}) as Json) };
        reply('simult_interpretation.updated', config);
      } else if (eventType === 'input_audio_buffer.append') {
        audio.append(data);
      } else if (eventType === 'input_audio_buffer.complete') {
        reply('input_audio_buffer.completed');
        const heard = audio.take();
        const translation = `[${String((config.translate_config as Json).to)}] ${heard}`;
        reply('simult_interpretation.transcription.delta', { delta: heard });
        reply('simult_interpretation.translation.delta', { delta: translation });
        for (const delta of audioDeltas(speechAudio(translation, 'pcm'))) reply('simult_interpretation.audio.delta', { delta });
        reply('simult_interpretation.message.completed');
      } else {
        return false;
      }
      return true;
    };
  },
};
