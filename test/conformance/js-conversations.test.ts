import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RoleType } from '@coze/api';
import { assertDenied, BOT, lastSeen, startConformance, type Conformance } from './support.js';

describe('@coze/api conversations.* and conversations.messages.* through the gateway', () => {
  let c: Conformance;
  before(async () => {
    c = await startConformance();
  });
  after(() => c.close());

  it('conversations.create, retrieve, list and clear; bob sees none of it', async () => {
    const conversation = await c.alice.conversations.create({ bot_id: BOT, meta_data: { topic: 'travel' }, messages: [{ role: RoleType.User, content: 'hi', content_type: 'text' }] });
    assert.match(conversation.id, /^\d+$/);
    assert.deepEqual(conversation.meta_data, { topic: 'travel' });
    assert.equal((await c.alice.conversations.retrieve(conversation.id)).id, conversation.id);
    const listed = await c.alice.conversations.list({ bot_id: BOT });
    assert.ok(listed.conversations.some((x) => x.id === conversation.id));
    assert.equal(listed.has_more, false);

    assert.deepEqual((await c.bob.conversations.list({ bot_id: BOT })).conversations, []);
    await assertDenied(c.bob.conversations.retrieve(conversation.id), 'bob retrieves alice’s conversation');
    await assertDenied(c.bob.conversations.clear(conversation.id), 'bob clears alice’s conversation');

    const cleared = await c.alice.conversations.clear(conversation.id);
    assert.equal(cleared.conversation_id, conversation.id);
    assert.deepEqual((await c.alice.conversations.messages.list(conversation.id)).data, []);
  });

  it('conversations.messages.create, list, retrieve, update and delete; bob can do none of them', async () => {
    const conversation = await c.alice.conversations.create({ bot_id: BOT });
    const message = await c.alice.conversations.messages.create(conversation.id, { role: RoleType.User, content: 'first', content_type: 'text', meta_data: { n: '1.0' } });
    assert.equal(message.content, 'first');
    assert.deepEqual(message.meta_data, { n: '1.0' });
    await c.alice.conversations.messages.create(conversation.id, { role: RoleType.Assistant, content: 'second', content_type: 'text', meta_data: {} });

    const listed = await c.alice.conversations.messages.list(conversation.id, { order: 'asc' });
    assert.deepEqual(listed.data.map((m) => m.content), ['first', 'second']);
    assert.equal(listed.first_id, message.id);
    assert.equal((await c.alice.conversations.messages.retrieve(conversation.id, message.id)).content, 'first');
    assert.equal(lastSeen(c.stack, '/v1/conversation/message/retrieve').method, 'GET');

    const updated = await c.alice.conversations.messages.update(conversation.id, message.id, { content: 'first, edited', content_type: 'text' });
    assert.equal(updated.content, 'first, edited');

    await assertDenied(c.bob.conversations.messages.list(conversation.id), 'bob lists alice’s messages');
    await assertDenied(c.bob.conversations.messages.retrieve(conversation.id, message.id), 'bob reads alice’s message');
    await assertDenied(c.bob.conversations.messages.create(conversation.id, { role: RoleType.User, content: 'intrusion', content_type: 'text', meta_data: {} }), 'bob writes into alice’s conversation');
    await assertDenied(c.bob.conversations.messages.update(conversation.id, message.id, { content: 'defaced', content_type: 'text' }), 'bob edits alice’s message');
    await assertDenied(c.bob.conversations.messages.delete(conversation.id, message.id), 'bob deletes alice’s message');

    const deleted = await c.alice.conversations.messages.delete(conversation.id, message.id);
    assert.equal(deleted.id, message.id);
    assert.deepEqual((await c.alice.conversations.messages.list(conversation.id)).data.map((m) => m.content), ['second']);
  });
});
