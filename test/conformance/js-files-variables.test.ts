import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertDenied, BOT, lastSeen, startConformance, type Conformance } from './support.js';

describe('@coze/api files.*, variables.* and bots.retrieve through the gateway', () => {
  let c: Conformance;
  let dir: string;
  before(async () => {
    c = await startConformance();
    dir = mkdtempSync(join(tmpdir(), 'csg-conformance-'));
  });
  after(() => c.close());

  it('files.upload (multipart, streamed) and files.retrieve; bob cannot read alice’s file', async () => {
    const path = join(dir, 'notes.txt');
    writeFileSync(path, 'alice’s notes');
    // In Node the SDK sends multipart through form-data, which takes a file stream.
    const file = await c.alice.files.upload({ file: createReadStream(path) });
    assert.equal(file.bytes, Buffer.byteLength('alice’s notes'));
    assert.equal(file.file_name, 'notes.txt');
    const retrieved = await c.alice.files.retrieve(file.id);
    assert.deepEqual({ id: retrieved.id, bytes: retrieved.bytes, file_name: retrieved.file_name }, { id: file.id, bytes: file.bytes, file_name: 'notes.txt' });
    await assertDenied(c.bob.files.retrieve(file.id), 'bob reads alice’s file');
  });

  it('variables.update and variables.retrieve: each user has their own, whatever connector_uid they claim', async () => {
    await c.alice.variables.update({ bot_id: BOT, connector_uid: 'bob', data: [{ keyword: 'city', value: 'Paris' }] });
    await c.bob.variables.update({ bot_id: BOT, connector_uid: 'alice', data: [{ keyword: 'city', value: 'Rome' }] });
    assert.equal((lastSeen(c.stack, '/v1/variables', 'PUT').body as { connector_uid: string }).connector_uid, 'bob', 'forced to the caller (bob)');
    const aliceVars = await c.alice.variables.retrieve({ bot_id: BOT, connector_uid: 'bob', keywords: ['city'] });
    const bobVars = await c.bob.variables.retrieve({ bot_id: BOT, connector_uid: 'alice' });
    assert.deepEqual(aliceVars.items.map((v) => [v.keyword, v.value]), [['city', 'Paris']]);
    assert.deepEqual(bobVars.items.map((v) => [v.keyword, v.value]), [['city', 'Rome']]);
    assert.equal(lastSeen(c.stack, '/v1/variables', 'GET').query.connector_uid, 'bob');
  });

  it('bots.retrieve (an allowed read)', async () => {
    const bot = await c.alice.bots.retrieve({ bot_id: BOT });
    assert.equal(bot.bot_id, BOT);
    assert.equal(bot.name, `Emulated bot ${BOT}`);
  });
});
