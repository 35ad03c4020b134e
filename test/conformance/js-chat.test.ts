import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ChatEventType, ChatStatus, RoleType, type ChatV3Message, type CreateChatData, type StreamChatData } from '@coze/api';
import { assertDenied, BOT, collect, ERROR_BOT, FAILING_BOT, lastSeen, startConformance, TOOL_BOT, type Conformance } from './support.js';

const ask = (content: string) => [{ role: RoleType.User, content, content_type: 'text' as const }];
const text = (events: StreamChatData[]) =>
  events.filter((e) => e.event === ChatEventType.CONVERSATION_MESSAGE_DELTA).map((e) => (e.data as ChatV3Message).content).join('');

function assertDeniedInStream(events: StreamChatData[], what: string): void {
  assert.equal(events.length, 1, what);
  assert.equal(events[0]?.event, ChatEventType.ERROR, what);
  assert.equal((events[0]?.data as { code: number }).code, 4101, what);
}

describe('@coze/api chat.* through the gateway', () => {
  let c: Conformance;
  before(async () => {
    c = await startConformance();
  });
  after(() => c.close());

  it('chat.stream: every event parsed by the SDK, usage reported, user_id forced to the session', async () => {
    const events = await collect(c.alice.chat.stream({ bot_id: BOT, user_id: 'bob', additional_messages: ask('hello') }));
    assert.deepEqual(
      [...new Set(events.map((e) => e.event))],
      ['conversation.chat.created', 'conversation.chat.in_progress', 'conversation.message.delta', 'conversation.message.completed', 'conversation.chat.completed', 'done'],
    );
    assert.equal(text(events), 'Echo: hello');
    const completed = events.find((e) => e.event === ChatEventType.CONVERSATION_CHAT_COMPLETED)?.data as CreateChatData;
    assert.deepEqual(completed.usage, { token_count: 16, output_count: 11, input_count: 5 });
    assert.equal(events.at(-1)?.data, '[DONE]');
    assert.equal((lastSeen(c.stack, '/v3/chat').body as { user_id: string }).user_id, 'alice');
  });

  it('chat.createAndPoll: the chat starts in_progress and the SDK polls POST /v3/chat/retrieve until it completes', async () => {
    const before = c.stack.emulator.requests.length;
    const { chat, messages } = await c.alice.chat.createAndPoll({ bot_id: BOT, additional_messages: ask('poll me') });
    assert.equal(chat.status, ChatStatus.COMPLETED);
    assert.deepEqual(chat.usage, { token_count: 20, output_count: 13, input_count: 7 });
    assert.deepEqual(messages?.map((m) => [m.type, m.content]).slice(0, 1), [['answer', 'Echo: poll me']]);
    const polls = c.stack.emulator.requests.slice(before).filter((r) => r.path === '/v3/chat/retrieve');
    assert.equal(polls.length, 2, 'it really polled');
    assert.ok(polls.every((r) => r.method === 'POST' && r.sessionName === 'alice'));
  });

  it('chat.create, chat.retrieve and chat.messages.list', async () => {
    const conversation = await c.alice.conversations.create({ bot_id: BOT });
    const created = await c.alice.chat.create({ bot_id: BOT, conversation_id: conversation.id, additional_messages: ask('step by step') });
    assert.equal(created.status, ChatStatus.IN_PROGRESS);
    assert.equal(created.conversation_id, conversation.id);
    assert.equal((await c.alice.chat.retrieve(conversation.id, created.id)).status, ChatStatus.IN_PROGRESS);
    assert.equal((await c.alice.chat.retrieve(conversation.id, created.id)).status, ChatStatus.COMPLETED);
    const listed = await c.alice.chat.messages.list(conversation.id, created.id);
    assert.deepEqual(listed.map((m) => m.type), ['answer', 'verbose']);
    assert.equal(listed[0]?.content, 'Echo: step by step');

    await assertDenied(c.bob.chat.retrieve(conversation.id, created.id), 'bob retrieves alice’s chat');
    await assertDenied(c.bob.chat.messages.list(conversation.id, created.id), 'bob lists alice’s chat messages');
    // A chat into another session's conversation is Coze's 4101 (the emulator once answered 500).
    await assertDenied(c.bob.chat.create({ bot_id: BOT, conversation_id: conversation.id, additional_messages: ask('intrusion') }), 'bob chats into alice’s conversation');
    // A refused streaming call: Coze answers JSON, and the JS SDK yields it as one `error` event.
    assertDeniedInStream(await collect(c.bob.chat.stream({ bot_id: BOT, conversation_id: conversation.id, additional_messages: ask('intrusion') })), 'bob streams into alice’s conversation');
  });

  it('chat.cancel: an in-progress chat is cancelled; bob cannot cancel alice’s', async () => {
    const created = await c.alice.chat.create({ bot_id: BOT, additional_messages: ask('never mind') });
    await assertDenied(c.bob.chat.cancel(created.conversation_id, created.id), 'bob cancels alice’s chat');
    const cancelled = await c.alice.chat.cancel(created.conversation_id, created.id);
    assert.equal(cancelled.status, ChatStatus.CANCELED);
    await assert.rejects(c.alice.chat.cancel(created.conversation_id, created.id), { code: 4104 });
  });

  it('chat.submitToolOutputs (streamed): a requires_action chat continues with the tool output', async () => {
    const first = await collect(c.alice.chat.stream({ bot_id: TOOL_BOT, additional_messages: ask('Paris') }));
    const action = first.find((e) => e.event === ChatEventType.CONVERSATION_CHAT_REQUIRES_ACTION)?.data as CreateChatData;
    assert.equal(action.status, ChatStatus.REQUIRES_ACTION);
    const call = action.required_action?.submit_tool_outputs.tool_calls[0];
    assert.equal(call?.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call?.function.arguments ?? ''), { city: 'Paris' });
    assert.equal(first.at(-1)?.event, ChatEventType.DONE);

    assertDeniedInStream(
      await collect(c.bob.chat.submitToolOutputs({ conversation_id: action.conversation_id, chat_id: action.id, stream: true, tool_outputs: [{ tool_call_id: call?.id ?? '', output: 'x' }] })),
      'bob answers alice’s tool call',
    );
    const rest = await collect(c.alice.chat.submitToolOutputs({ conversation_id: action.conversation_id, chat_id: action.id, stream: true, tool_outputs: [{ tool_call_id: call?.id ?? '', output: '22°C' }] }));
    assert.equal(text(rest), 'Tool said: 22°C');
    assert.equal(rest.find((e) => e.event === ChatEventType.CONVERSATION_CHAT_COMPLETED)?.event, 'conversation.chat.completed');
  });

  it('chat.submitToolOutputs (stream: false), then polling: the non-streaming tool flow', async () => {
    const { chat } = await c.alice.chat.createAndPoll({ bot_id: TOOL_BOT, additional_messages: ask('Rome') });
    assert.equal(chat.status, ChatStatus.REQUIRES_ACTION);
    const call = chat.required_action?.submit_tool_outputs.tool_calls[0];
    const submitted = await c.alice.chat.submitToolOutputs({ conversation_id: chat.conversation_id, chat_id: chat.id, stream: false, tool_outputs: [{ tool_call_id: call?.id ?? '', output: 'sunny' }] }).next();
    assert.equal((submitted.value as CreateChatData).status, ChatStatus.IN_PROGRESS);
    let status = ChatStatus.IN_PROGRESS;
    for (let i = 0; i < 5 && status === ChatStatus.IN_PROGRESS; i++) status = (await c.alice.chat.retrieve(chat.conversation_id, chat.id)).status;
    assert.equal(status, ChatStatus.COMPLETED);
    const messages = await c.alice.chat.messages.list(chat.conversation_id, chat.id);
    assert.deepEqual(messages.map((m) => m.type), ['function_call', 'tool_output', 'answer', 'verbose']);
  });

  it('Coze’s in-stream conversation.chat.failed and error reach the SDK as Coze framed them', async () => {
    const failed = await collect(c.alice.chat.stream({ bot_id: FAILING_BOT, additional_messages: ask('fail') }));
    const chat = failed.find((e) => e.event === ChatEventType.CONVERSATION_CHAT_FAILED)?.data as CreateChatData;
    assert.deepEqual(chat.last_error, { code: 5000, msg: 'The bot failed to answer (emulated failing bot).' });
    assert.equal(failed.at(-1)?.event, ChatEventType.DONE);

    const errored = await collect(c.alice.chat.stream({ bot_id: ERROR_BOT, additional_messages: ask('error') }));
    assert.equal(errored.at(-1)?.event, ChatEventType.ERROR);
    assert.deepEqual(errored.at(-1)?.data, { code: 4013, msg: 'The model failed to answer (emulated error bot).' });
    const { chat: polled } = await c.alice.chat.createAndPoll({ bot_id: FAILING_BOT, additional_messages: ask('fail') });
    assert.equal(polled.status, ChatStatus.FAILED);
  });
});
