import { ApiError, bodyOf, ok, param } from './api-context.js';
import type { ApiRoute } from './api.js';
import { newId } from './store.js';

/** The audio APIs (Coze docs: https://www.coze.cn/open/docs/developer_guides/text_to_speech, create_room) and the live-interpretation listener. */
export const AUDIO_ROUTES: readonly ApiRoute[] = [
  ['POST', /^\/v1\/audio\/speech$/, (ctx) => {
    const body = bodyOf(ctx);
    const input = typeof body.input === 'string' ? body.input : '';
    if (input === '' || Buffer.byteLength(input) > 1024) throw new ApiError(4000, 'input must be 1 to 1024 bytes of UTF-8 text');
    if (typeof body.voice_id !== 'string' || body.voice_id === '') throw new ApiError(4000, 'voice_id is required');
    const format = typeof body.response_format === 'string' ? body.response_format : 'mp3';
    const type = SPEECH_TYPES[format];
    if (!type) throw new ApiError(4000, `unsupported response_format ${format}`);
    // Coze answers speech with the audio itself, not JSON.
    const audio = speechAudio(input, format);
    ctx.res.writeHead(200, { 'content-type': type, 'content-length': String(audio.length), 'x-tt-logid': ctx.logId });
    ctx.res.end(audio);
  }],
  ['POST', /^\/v1\/audio\/transcriptions$/, (ctx) => {
    if (!ctx.upload) throw new ApiError(4300, 'the upload holds no file part');
    ok(ctx, { text: transcribe(ctx.upload.head, ctx.upload.bytes) });
  }],
  ['GET', /^\/v1\/audio\/voices$/, (ctx) => {
    // Only system voices: this account has cloned none.
    const voices = param(ctx, 'filter_system_voice') === 'true' ? [] : SYSTEM_VOICES;
    ok(ctx, { voice_list: voices, has_more: false });
  }],
  ['POST', /^\/v1\/audio\/rooms$/, (ctx) => {
    const body = bodyOf(ctx);
    if (typeof body.bot_id !== 'string' || body.bot_id === '') throw new ApiError(4000, 'bot_id is required');
    ok(ctx, { room_id: newId(), app_id: 'emulated-rtc-app', token: `rtc-${newId()}`, uid: body.uid ?? '' });
  }],
  ['GET', /^\/v1\/audio\/live\/([^/]+)$/, (ctx, m) => {
    const liveId = m[1] as string;
    ok(ctx, {
      app_id: 'emulated-rtc-app',
      stream_infos: [
        { stream_id: `${liveId}-origin`, name: 'Original', live_type: 'origin' },
        { stream_id: `${liveId}-translation`, name: 'Translation', live_type: 'translation' },
      ],
    });
  }],
];

const SPEECH_TYPES: Readonly<Record<string, string>> = { mp3: 'audio/mpeg', wav: 'audio/wav', pcm: 'audio/pcm', ogg_opus: 'audio/ogg', opus: 'audio/ogg' };

/**
 * The emulator's "speech": a fixed audio header, the text, and every byte value once, so that a
 * client can check that binary audio arrived unchanged.
 */
export function speechAudio(input: string, format: string): Buffer {
  const header = format === 'wav' ? Buffer.from('RIFF\0\0\0\0WAVEfmt ', 'latin1') : Buffer.from('ID3\x04\0\0\0\0\0\0', 'latin1');
  return Buffer.concat([header, Buffer.from(input, 'utf8'), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]);
}

/** The emulator "hears" audio that is UTF-8 text as that text; anything else by its size. */
export function transcribe(head: Buffer, bytes: number): string {
  if (bytes === head.length) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(head);
    } catch {
      // Real audio: fall through.
    }
  }
  return `(${bytes} bytes of audio)`;
}

const SYSTEM_VOICES = [
  { voice_id: '7426720361733046281', name: 'Emulated voice (zh)', is_system_voice: true, language_code: 'zh', language_name: 'Chinese', preview_text: '你好', preview_audio: '', available_training_times: 0, create_time: 1720000000, update_time: 1720000000, model_type: 'big', state: 'active' },
  { voice_id: '7426720361733046282', name: 'Emulated voice (en)', is_system_voice: true, language_code: 'en', language_name: 'English', preview_text: 'Hello', preview_audio: '', available_training_times: 0, create_time: 1720000000, update_time: 1720000000, model_type: 'big', state: 'active' },
];
