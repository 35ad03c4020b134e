import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ChatEventType, CozeAPI, RoleType } from '@coze/api';
import { startStack, type Stack } from '../helpers/stack.js';

/**
 * The product promise, told with the official JS SDK as the client: two users behind one Coze
 * app, each pointed at the gateway with their own credential, never see each other.
 */
describe('official SDK through the gateway: per-user isolation', () => {
  let stack: Stack;
  let alice: CozeAPI;
  let bob: CozeAPI;
  let aliceJwt: string;
  let bobJwt: string;
  const botId = '7000000000000000001';

  before(async () => {
    stack = await startStack();
    aliceJwt = await stack.callerToken('alice');
    bobJwt = await stack.callerToken('bob');
    alice = new CozeAPI({ baseURL: stack.url, token: aliceJwt });
    bob = new CozeAPI({ baseURL: stack.url, token: bobJwt });
  });
  after(() => stack.close());

  it('keeps conversations, chats, files and variables apart', async () => {
    const aliceConv = await alice.conversations.create({ bot_id: botId });
    assert.ok(aliceConv.id);

    // Streaming chat: deltas arrive as Coze framed them.
    let text = '';
    let done = false;
    for await (const event of await alice.chat.stream({
      bot_id: botId,
      conversation_id: aliceConv.id,
      user_id: 'bob', // a spoof attempt: the gateway forces user_id to alice's session
      additional_messages: [{ role: RoleType.User, content: 'hello', content_type: 'text' }],
    })) {
      if (event.event === ChatEventType.CONVERSATION_MESSAGE_DELTA) text += event.data.content;
      if (event.event === ChatEventType.DONE) done = true;
    }
    assert.equal(text, 'Echo: hello');
    assert.ok(done);

    // Non-streaming chat.
    const chat = await alice.chat.create({
      bot_id: botId,
      conversation_id: aliceConv.id,
      user_id: 'alice',
      auto_save_history: true,
      additional_messages: [{ role: RoleType.User, content: 'again', content_type: 'text' }],
    });
    assert.equal(chat.conversation_id, aliceConv.id);

    // Upload and variables.
    // In Node the SDK uploads through form-data, which takes a file stream.
    const notes = join(mkdtempSync(join(tmpdir(), 'csg-sdk-')), 'notes.txt');
    writeFileSync(notes, 'alice-notes');
    const file = await alice.files.upload({ file: createReadStream(notes) });
    assert.equal(file.bytes, 11);
    await alice.variables.update({ bot_id: botId, connector_uid: 'bob', data: [{ keyword: 'city', value: 'Paris' }] });
    await bob.variables.update({ bot_id: botId, connector_uid: 'alice', data: [{ keyword: 'city', value: 'Rome' }] });

    // Bob sees none of it.
    const bobList = await bob.conversations.list({ bot_id: botId });
    assert.equal(bobList.conversations.length, 0);
    const aliceList = await alice.conversations.list({ bot_id: botId });
    assert.ok(aliceList.conversations.some((c) => c.id === aliceConv.id));
    await assert.rejects(bob.conversations.retrieve(aliceConv.id), /4101/);
    await assert.rejects(bob.conversations.messages.list(aliceConv.id), /4101/);
    await assert.rejects(
      bob.conversations.messages.create(aliceConv.id, { role: RoleType.User, content: 'intrusion', content_type: 'text', meta_data: {} }),
      /4101/,
    );
    await assert.rejects(bob.files.retrieve(file.id), /4101/);

    // Each user's variables are their own, whatever connector_uid they claimed.
    const aliceVars = await alice.variables.retrieve({ bot_id: botId, connector_uid: 'bob' });
    const bobVars = await bob.variables.retrieve({ bot_id: botId, connector_uid: 'alice' });
    assert.deepEqual(aliceVars.items.map((v) => [v.keyword, v.value]), [['city', 'Paris']]);
    assert.deepEqual(bobVars.items.map((v) => [v.keyword, v.value]), [['city', 'Rome']]);
  });

  it('upstream only ever saw the session token of the caller, and none of the caller credentials', () => {
    const seen = stack.emulator.requests;
    assert.ok(seen.length >= 10);
    for (const request of seen) {
      assert.ok(request.sessionName === 'alice' || request.sessionName === 'bob', `every request resolved to a session: ${request.path}`);
      const auth = String(request.headers.authorization ?? '');
      assert.match(auth, /^Bearer czs_/);
      assert.ok(!auth.includes(aliceJwt) && !auth.includes(bobJwt));
      assert.equal(request.headers.cookie, undefined);
      assert.equal(request.headers['x-api-key'], undefined);
      assert.ok(request.headers['x-request-id'], 'the gateway adds X-Request-Id');
    }
    const chats = seen.filter((r) => r.path === '/v3/chat');
    assert.ok(chats.length >= 2);
    for (const chat of chats) assert.equal((chat.body as { user_id: string }).user_id, chat.sessionName, 'user_id forced to the session');
    const variableWrites = seen.filter((r) => r.path === '/v1/variables' && r.method === 'PUT');
    for (const write of variableWrites) assert.equal((write.body as { connector_uid: string }).connector_uid, write.sessionName);
    const variableReads = seen.filter((r) => r.path === '/v1/variables' && r.method === 'GET');
    for (const read of variableReads) assert.equal(read.query.connector_uid, read.sessionName);
    assert.equal(stack.emulator.stats.exchanges, 2, 'one token per user for the whole run');
  });
});
