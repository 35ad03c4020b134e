import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ChatEventType, RoleType, WorkflowEventType, type ChatV3Message, type WorkflowEventError, type WorkflowEventInterrupt, type WorkflowEventMessage } from '@coze/api';
import { assertDenied, BOT, collect, ERROR_WORKFLOW, INTERRUPT_WORKFLOW, lastSeen, PING_WORKFLOW, startConformance, WORKFLOW, type Conformance } from './support.js';

describe('@coze/api workflows.* through the gateway', () => {
  let c: Conformance;
  before(async () => {
    c = await startConformance();
  });
  after(() => c.close());

  it('workflows.runs.create (sync and async) and runs.history; big numbers in parameters arrive as sent; bob cannot read alice’s run', async () => {
    const run = await c.alice.workflows.runs.create({ workflow_id: WORKFLOW, parameters: { order: 1 }, ext: { user_id: 'bob' } });
    assert.deepEqual(JSON.parse(run.data), { output: `ran ${WORKFLOW}`, user_id: 'alice' });
    assert.match(run.execute_id, /^\d+$/);
    assert.ok(run.debug_url.includes(run.execute_id));

    const async = await c.alice.workflows.runs.create({ workflow_id: WORKFLOW, is_async: true });
    const [history] = await c.alice.workflows.runs.history(WORKFLOW, async.execute_id);
    assert.equal(history?.execute_status, 'Success');
    assert.equal(history?.run_mode, 2);
    assert.equal(history?.connector_uid, 'alice');
    await assertDenied(c.bob.workflows.runs.history(WORKFLOW, async.execute_id), 'bob reads alice’s run history');
  });

  it('workflows.runs.stream: Message events with usage, then Done; ext.user_id forced', async () => {
    const events = await collect(c.alice.workflows.runs.stream({ workflow_id: WORKFLOW, ext: { user_id: 'mallory' } }));
    assert.deepEqual(events.map((e) => [e.id, e.event]), [[0, 'Message'], [1, 'Message'], [2, 'Message'], [3, 'Done']]);
    const messages = events.slice(0, 3).map((e) => e.data as WorkflowEventMessage);
    assert.equal(messages.map((m) => m.content).join(''), 'Hello from the workflow');
    assert.deepEqual(messages.map((m) => m.ext?.user_id), ['alice', 'alice', 'alice']);
    // The emulator counts the output's characters as output tokens.
    const output = JSON.stringify({ output: `ran ${WORKFLOW}`, user_id: 'alice' }).length;
    assert.deepEqual((messages[2] as WorkflowEventMessage & { usage?: unknown }).usage, { token_count: output + 2, output_count: output, input_count: 2 });
  });

  it('workflows.runs.stream then runs.resume: an Interrupt is resumed with stream_resume; bob cannot resume alice’s', async () => {
    const events = await collect(c.alice.workflows.runs.stream({ workflow_id: INTERRUPT_WORKFLOW }));
    assert.deepEqual(events.map((e) => [e.id, e.event]), [[0, 'Message'], [1, 'Interrupt']]);
    const interrupt = events[1]?.data as WorkflowEventInterrupt;
    assert.equal(interrupt.node_title, 'Question');
    const resume = { workflow_id: INTERRUPT_WORKFLOW, event_id: interrupt.interrupt_data.event_id, interrupt_type: interrupt.interrupt_data.type, resume_data: 'blue' };

    // A refused streaming call: Coze's JSON answer arrives as one error event.
    const refused = await collect(c.bob.workflows.runs.resume(resume));
    assert.deepEqual(refused.map((e) => [e.event, (e.data as unknown as { code: number }).code]), [['error', 4101]]);

    const resumed = await collect(c.alice.workflows.runs.resume(resume));
    assert.deepEqual(resumed.map((e) => e.event), [WorkflowEventType.MESSAGE, WorkflowEventType.DONE]);
    assert.equal((resumed[0]?.data as WorkflowEventMessage).content, 'Resumed with: blue');
    assert.equal(lastSeen(c.stack, '/v1/workflow/stream_resume').sessionName, 'alice');
  });

  it('Coze’s workflow Error (with its id) and PING events reach the SDK', async () => {
    const failed = await collect(c.alice.workflows.runs.stream({ workflow_id: ERROR_WORKFLOW }));
    assert.deepEqual(failed.map((e) => [e.id, e.event]), [[0, 'Message'], [1, 'Error']]);
    assert.deepEqual(failed[1]?.data as WorkflowEventError, { error_code: 4000, error_message: 'Request parameter error' });

    const pinged = await collect(c.alice.workflows.runs.stream({ workflow_id: PING_WORKFLOW }));
    assert.deepEqual(pinged.map((e) => [e.id, e.event]), [[0, 'Message'], [1, 'PING'], [2, 'Message'], [3, 'PING'], [4, 'Message'], [5, 'Done']]);
  });

  it('workflows.chat.stream: a chatflow answers in chat framing, ends with its debug_url done; bob cannot join alice’s conversation', async () => {
    const conversation = await c.alice.conversations.create({ bot_id: BOT });
    const events = await collect(
      c.alice.workflows.chat.stream({ workflow_id: WORKFLOW, bot_id: BOT, conversation_id: conversation.id, ext: { user_id: 'bob' }, additional_messages: [{ role: RoleType.User, content: 'flow', content_type: 'text' }] }),
    );
    const answer = events.filter((e) => e.event === ChatEventType.CONVERSATION_MESSAGE_DELTA).map((e) => (e.data as ChatV3Message).content).join('');
    assert.equal(answer, 'Echo: flow');
    assert.equal(events.at(-1)?.event, ChatEventType.DONE);
    assert.equal((lastSeen(c.stack, '/v1/workflows/chat').body as { ext: { user_id: string } }).ext.user_id, 'alice');

    const refused = await collect(
      c.bob.workflows.chat.stream({ workflow_id: WORKFLOW, bot_id: BOT, conversation_id: conversation.id, additional_messages: [{ role: RoleType.User, content: 'x', content_type: 'text' }] }),
    );
    assert.deepEqual(refused.map((e) => [e.event, (e.data as { code: number }).code]), [['error', 4101]]);
  });
});
