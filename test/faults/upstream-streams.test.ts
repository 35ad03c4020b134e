import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startStack, type Stack } from '../helpers/stack.js';

const chatBody = JSON.stringify({ bot_id: 'b', user_id: 'x', stream: true, additional_messages: [{ role: 'user', content: 'hello there', content_type: 'text' }] });

describe('streams that cannot end normally get a clean end', () => {
  let stack: Stack;
  let headers: Record<string, string>;

  before(async () => {
    stack = await startStack({ env: { STREAM_IDLE_TIMEOUT_SECONDS: '1' } });
    headers = { authorization: `Bearer ${await stack.callerToken('alice')}`, 'content-type': 'application/json' };
  });
  after(() => stack.close());

  it('Coze resets mid-stream: the client gets the events so far, then one error event in chat framing', async () => {
    stack.emulator.setApiFault({ kind: 'reset-mid-stream', afterEvents: 2, times: 1 });
    const res = await fetch(`${stack.url}/v3/chat`, { method: 'POST', headers, body: chatBody });
    const text = await res.text();
    const events = text.split('\n\n').filter(Boolean);
    assert.equal(events.length, 3, text);
    assert.match(events[0] as string, /^event:conversation\.chat\.created\n/);
    assert.match(events[1] as string, /^event:conversation\.chat\.in_progress\n/);
    assert.equal(events[2], 'event:error\ndata:{"code":502002,"msg":"The Coze stream was cut before it ended."}');
  });

  it('workflow-final-event-has-id: Coze stalls, and the idle timeout ends a workflow stream with an Error event that carries id: <last + 1>', async () => {
    stack.emulator.setApiFault({ kind: 'stall-mid-stream', afterEvents: 1, times: 1 });
    const res = await fetch(`${stack.url}/v1/workflow/stream_run`, { method: 'POST', headers, body: JSON.stringify({ workflow_id: 'w' }) });
    const text = await res.text();
    assert.match(text, /^id: 0\nevent: Message\n/);
    assert.ok(text.endsWith('\n\nid: 1\nevent: Error\ndata: {"error_code":504002,"error_message":"The Coze stream went quiet for too long and was ended by the gateway."}\n\n'), text);
    for (let i = 0; i < 100 && stack.emulator.openStreams > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(stack.emulator.openStreams, 0, 'the stalled upstream stream was closed');
  });

  it('final-event-after-mid-event-cut: Coze cuts a chat stream inside an event; the unfinished event is dropped and the final event starts clean', async () => {
    stack.emulator.setApiFault({ kind: 'reset-mid-stream', afterEvents: 2, partialBytes: 25, times: 1 });
    const res = await fetch(`${stack.url}/v3/chat`, { method: 'POST', headers, body: chatBody });
    const text = await res.text();
    const events = text.split('\n\n');
    assert.equal(events.length, 4, text);
    assert.match(events[0] as string, /^event:conversation\.chat\.created\ndata:\{.*\}$/);
    assert.match(events[1] as string, /^event:conversation\.chat\.in_progress\ndata:\{.*\}$/);
    assert.equal(events[2], 'event:error\ndata:{"code":502002,"msg":"The Coze stream was cut before it ended."}');
    assert.equal(events[3], '', 'the stream ends with the blank line of the final event');
    assert.ok(!text.includes('conversation.message.delta'), 'the half-sent event never reached the client');
  });

  it('idle-final-event-before-first-event: Coze sends the headers and then nothing; the stream still ends with the idle event, not a cut socket', async () => {
    // The client socket has been as quiet as Coze since the headers: its own inactivity timeout
    // (the same length) must not destroy it before the relay writes the final event.
    stack.emulator.setApiFault({ kind: 'stall-mid-stream', afterEvents: 0, times: 1 });
    const res = await fetch(`${stack.url}/v3/chat`, { method: 'POST', headers, body: chatBody });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.equal(text, 'event:error\ndata:{"code":504002,"msg":"The Coze stream went quiet for too long and was ended by the gateway."}\n\n');
  });

  it('idle-final-event-after-held-partial: Coze sends part of an event and then nothing; the held bytes are dropped and the stream ends with the idle event', async () => {
    // The relay holds the unfinished event, so the client socket sees no byte of it.
    stack.emulator.setApiFault({ kind: 'stall-mid-stream', afterEvents: 0, partialBytes: 20, times: 1 });
    const res = await fetch(`${stack.url}/v1/workflow/stream_run`, { method: 'POST', headers, body: JSON.stringify({ workflow_id: 'w' }) });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.equal(text, 'id: 0\nevent: Error\ndata: {"error_code":504002,"error_message":"The Coze stream went quiet for too long and was ended by the gateway."}\n\n');
  });

  it('final-event-after-mid-event-cut: a workflow stream stalled in the middle of an event ends with the next id', async () => {
    stack.emulator.setApiFault({ kind: 'stall-mid-stream', afterEvents: 2, partialBytes: 12, times: 1 });
    const res = await fetch(`${stack.url}/v1/workflow/stream_run`, { method: 'POST', headers, body: JSON.stringify({ workflow_id: 'w' }) });
    const text = await res.text();
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    assert.deepEqual(ids, [0, 1, 2], text);
    assert.match(text, /\n\nid: 2\nevent: Error\ndata: \{"error_code":504002,/);
    assert.ok(!text.includes('the workflow'), 'the half-sent third message never reached the client');
  });
});
