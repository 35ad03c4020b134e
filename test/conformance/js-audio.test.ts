import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { speechAudio } from '../../src/emulator/index.js';
import { BOT, lastSeen, startConformance, type Conformance } from './support.js';

describe('@coze/api audio.* through the gateway', () => {
  let c: Conformance;
  before(async () => {
    c = await startConformance();
  });
  after(() => c.close());

  it('audio.speech.create: Coze’s binary audio body arrives byte for byte', async () => {
    const audio = await c.alice.audio.speech.create({ input: 'Bonjour, ça va ?', voice_id: '7426720361733046281', response_format: 'mp3' });
    assert.deepEqual(Buffer.from(audio as ArrayBuffer), speechAudio('Bonjour, ça va ?', 'mp3'));
    assert.equal((lastSeen(c.stack, '/v1/audio/speech').body as { sample_rate: number }).sample_rate, 24000, 'the SDK’s own default reached Coze');
  });

  it('audio.transcriptions.create: a multipart upload, streamed through', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'csg-conformance-')), 'hello.wav');
    writeFileSync(path, 'what the audio says');
    const result = await c.alice.audio.transcriptions.create({ file: createReadStream(path) });
    assert.deepEqual(result, { text: 'what the audio says' });
  });

  it('audio.rooms.create: the RTC uid is forced to the caller', async () => {
    const room = await c.alice.audio.rooms.create({ bot_id: BOT, connector_id: '1024', uid: 'bob' });
    assert.equal(room.uid, 'alice');
    assert.match(room.room_id, /^\d+$/);
    assert.ok(room.token && room.app_id);
    const bobRoom = await c.bob.audio.rooms.create({ bot_id: BOT, connector_id: '1024', uid: 'alice' });
    assert.equal(bobRoom.uid, 'bob');
  });

  it('audio.voices.list', async () => {
    const voices = await c.alice.audio.voices.list({ page_size: 10 });
    assert.equal(voices.has_more, false);
    assert.ok(voices.voice_list.length > 0 && voices.voice_list.every((v) => v.is_system_voice && v.voice_id));
    assert.deepEqual((await c.alice.audio.voices.list({ filter_system_voice: true })).voice_list, []);
  });

  it('audio.live.retrieve: the listener side of a live interpretation', async () => {
    const live = await c.alice.audio.live.retrieve('7450000000000000001');
    assert.equal(live.app_id, 'emulated-rtc-app');
    assert.deepEqual(live.stream_infos.map((s) => s.live_type), ['origin', 'translation']);
  });
});
