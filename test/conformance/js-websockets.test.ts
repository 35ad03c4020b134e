import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebsocketsEventType, type WebSocketAPI } from '@coze/api';
import { speechAudio } from '../../src/emulator/index.js';
import { BOT, startConformance, type Conformance } from './support.js';

interface ServerEvent {
  id: string;
  event_type: string;
  data?: Record<string, unknown>;
  detail?: { logid?: string };
}

/**
 * One of the SDK's own WebSocket clients (`WebSocketAPI`): every event it parsed, in order, and
 * a way to wait for the next of a type. In Node it sends the credential as the Authorization
 * header and as the authorization query parameter (the case the gateway used to refuse).
 */
function watch<Req, Res>(ws: WebSocketAPI<Req, Res>) {
  const events: ServerEvent[] = [];
  const waiters: Array<() => void> = [];
  let read = 0;
  let failure: unknown;
  ws.onmessage = (data) => {
    events.push(data as unknown as ServerEvent);
    for (const wake of waiters.splice(0)) wake();
  };
  ws.onerror = (error) => {
    failure = error;
    for (const wake of waiters.splice(0)) wake();
  };
  const opened = new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    setTimeout(() => reject(new Error(`the socket did not open: ${JSON.stringify(failure)}`)), 5000).unref();
  });
  return {
    opened,
    /** Events up to and including the next one of `type` (from where the last call stopped). */
    async until(type: string): Promise<ServerEvent[]> {
      for (;;) {
        const at = events.findIndex((e, i) => i >= read && e.event_type === type);
        if (at !== -1) {
          const slice = events.slice(read, at + 1);
          read = at + 1;
          return slice;
        }
        if (failure) throw new Error(`socket error: ${JSON.stringify(failure)}`);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
    send: (eventType: string, data?: unknown) => ws.send({ id: `${eventType}-${events.length}`, event_type: eventType, ...(data === undefined ? {} : { data }) } as unknown as Req),
    async close() {
      const closed = new Promise<void>((resolve) => (ws.onclose = () => resolve()));
      ws.close();
      await closed;
    },
  };
}

const b64 = (text: string) => Buffer.from(text).toString('base64');
const audioOf = (events: ServerEvent[], type: string, field = 'delta') =>
  Buffer.concat(events.filter((e) => e.event_type === type).map((e) => Buffer.from(String(e.data?.[field] ?? ''), 'base64')));

describe('@coze/api websockets.* (Node) through the gateway', () => {
  let c: Conformance;
  before(async () => {
    c = await startConformance();
  });
  after(() => c.close());

  it('websockets.chat: the SDK connects from Node, the user id is forced, a spoken question gets a written and spoken answer', async () => {
    const socket = watch(await c.alice.websockets.chat.create({ bot_id: BOT }, { maxRetries: 0 }));
    await socket.opened;
    const [created] = await socket.until(WebsocketsEventType.CHAT_CREATED);
    assert.ok(created?.detail?.logid, 'Coze’s log id reached the SDK');

    socket.send(WebsocketsEventType.CHAT_UPDATE, { chat_config: { user_id: 'bob', auto_save_history: true }, output_audio: { voice_id: 'v1' } });
    const updated = (await socket.until(WebsocketsEventType.CHAT_UPDATED)).at(-1);
    assert.equal((updated?.data?.chat_config as { user_id: string }).user_id, 'alice');

    socket.send(WebsocketsEventType.INPUT_AUDIO_BUFFER_APPEND, { delta: b64('hello there') });
    socket.send(WebsocketsEventType.INPUT_AUDIO_BUFFER_COMPLETE);
    const turn = await socket.until(WebsocketsEventType.CONVERSATION_CHAT_COMPLETED);
    assert.deepEqual(
      [...new Set(turn.map((e) => e.event_type))],
      ['input_audio_buffer.completed', 'conversation.audio_transcript.completed', 'conversation.chat.created', 'conversation.chat.in_progress', 'conversation.message.delta', 'conversation.message.completed', 'conversation.audio.delta', 'conversation.audio.completed', 'conversation.chat.completed'],
    );
    assert.equal(turn.filter((e) => e.event_type === 'conversation.message.delta').map((e) => e.data?.content).join(''), 'Echo: hello there');
    assert.deepEqual(audioOf(turn, 'conversation.audio.delta', 'content'), speechAudio('Echo: hello there', 'pcm'));
    const chat = turn.at(-1)?.data as { conversation_id: string; usage: unknown };
    assert.deepEqual(chat.usage, { token_count: 28, output_count: 17, input_count: 11 });
    await socket.close();

    const upstream = c.stack.emulator.websockets.find((w) => w.path === '/v1/chat');
    assert.equal(upstream?.sessionName, 'alice');
    assert.match(String(upstream?.headers.authorization), /^Bearer czs_/);
    assert.match(upstream?.query.authorization ?? '', /^Bearer czs_/);

    // Bob can neither read alice's voice conversation nor continue it over his own socket.
    await assert.rejects(c.bob.conversations.retrieve(chat.conversation_id), { code: 4101 });
    const intruder = watch(await c.bob.websockets.chat.create({ bot_id: BOT }, { maxRetries: 0 }));
    await intruder.opened;
    intruder.send(WebsocketsEventType.CHAT_UPDATE, { chat_config: { conversation_id: chat.conversation_id } });
    await intruder.until(WebsocketsEventType.CHAT_UPDATED);
    intruder.send('conversation.message.create', { role: 'user', content_type: 'text', content: 'intrusion' });
    const refused = (await intruder.until(WebsocketsEventType.ERROR)).at(-1);
    assert.equal((refused?.data as { code: number }).code, 4101);
    await intruder.close();
  });

  it('websockets.audio.speech: text in, Coze’s audio out', async () => {
    const socket = watch(await c.alice.websockets.audio.speech.create({}, { maxRetries: 0 }));
    await socket.opened;
    await socket.until(WebsocketsEventType.SPEECH_CREATED);
    socket.send(WebsocketsEventType.SPEECH_UPDATE, { output_audio: { codec: 'pcm', voice_id: 'v1' } });
    const updated = (await socket.until(WebsocketsEventType.SPEECH_UPDATED)).at(-1);
    assert.equal((updated?.data?.output_audio as { voice_id: string }).voice_id, 'v1');
    socket.send(WebsocketsEventType.INPUT_TEXT_BUFFER_APPEND, { delta: 'Read this ' });
    socket.send(WebsocketsEventType.INPUT_TEXT_BUFFER_APPEND, { delta: 'aloud.' });
    socket.send(WebsocketsEventType.INPUT_TEXT_BUFFER_COMPLETE);
    const spoken = await socket.until(WebsocketsEventType.SPEECH_AUDIO_COMPLETED);
    assert.equal(spoken[0]?.event_type, WebsocketsEventType.INPUT_TEXT_BUFFER_COMPLETED);
    assert.deepEqual(audioOf(spoken, WebsocketsEventType.SPEECH_AUDIO_UPDATE), speechAudio('Read this aloud.', 'pcm'));
    await socket.close();
  });

  it('websockets.audio.transcriptions: audio in, Coze’s text out', async () => {
    const socket = watch(await c.alice.websockets.audio.transcriptions.create({}, { maxRetries: 0 }));
    await socket.opened;
    await socket.until(WebsocketsEventType.TRANSCRIPTIONS_CREATED);
    socket.send(WebsocketsEventType.TRANSCRIPTIONS_UPDATE, { input_audio: { format: 'pcm', sample_rate: 16000 } });
    const updated = (await socket.until(WebsocketsEventType.TRANSCRIPTIONS_UPDATED)).at(-1);
    assert.equal((updated?.data?.input_audio as { sample_rate: number }).sample_rate, 16000);
    socket.send(WebsocketsEventType.INPUT_AUDIO_BUFFER_APPEND, { delta: b64('spoken ') });
    socket.send(WebsocketsEventType.INPUT_AUDIO_BUFFER_APPEND, { delta: b64('words') });
    socket.send(WebsocketsEventType.INPUT_AUDIO_BUFFER_COMPLETE);
    const heard = await socket.until(WebsocketsEventType.TRANSCRIPTIONS_MESSAGE_COMPLETED);
    assert.deepEqual(heard.map((e) => e.event_type), ['input_audio_buffer.completed', 'transcriptions.message.update', 'transcriptions.message.completed']);
    assert.equal(heard.at(-1)?.data?.content, 'spoken words');
    await socket.close();
  });

  it('websockets.audio.simultInterpretation: audio in, transcription, translation and audio out', async () => {
    const socket = watch(await c.alice.websockets.audio.simultInterpretation.create({ maxRetries: 0 }));
    await socket.opened;
    await socket.until(WebsocketsEventType.SIMULT_INTERPRETATION_CREATED);
    socket.send(WebsocketsEventType.SIMULT_INTERPRETATION_UPDATE, { translate_config: { from: 'en', to: 'zh' } });
    const updated = (await socket.until(WebsocketsEventType.SIMULT_INTERPRETATION_UPDATED)).at(-1);
    assert.deepEqual(updated?.data?.translate_config, { from: 'en', to: 'zh' });
    socket.send(WebsocketsEventType.INPUT_AUDIO_BUFFER_APPEND, { delta: b64('good morning') });
    socket.send(WebsocketsEventType.INPUT_AUDIO_BUFFER_COMPLETE);
    const done = await socket.until(WebsocketsEventType.SIMULT_INTERPRETATION_MESSAGE_COMPLETED);
    const find = (type: string) => done.find((e) => e.event_type === type)?.data?.delta;
    assert.equal(find(WebsocketsEventType.SIMULT_INTERPRETATION_TRANSCRIPTION_DELTA), 'good morning');
    assert.equal(find(WebsocketsEventType.SIMULT_INTERPRETATION_TRANSLATION_DELTA), '[zh] good morning');
    assert.deepEqual(audioOf(done, WebsocketsEventType.SIMULT_INTERPRETATION_AUDIO_DELTA), speechAudio('[zh] good morning', 'pcm'));
    await socket.close();
  });
});
