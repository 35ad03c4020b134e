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

  it('Coze stalls: the idle timeout ends the stream with an error event, in workflow framing for workflows', async () => {
    stack.emulator.setApiFault({ kind: 'stall-mid-stream', afterEvents: 1, times: 1 });
    const res = await fetch(`${stack.url}/v1/workflow/stream_run`, { method: 'POST', headers, body: JSON.stringify({ workflow_id: 'w' }) });
    const text = await res.text();
    assert.match(text, /^id: 0\nevent: Message\n/);
    assert.ok(text.endsWith('event: Error\ndata: {"error_code":504002,"error_message":"The Coze stream went quiet for too long and was ended by the gateway."}\n\n'), text);
    for (let i = 0; i < 100 && stack.emulator.openStreams > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(stack.emulator.openStreams, 0, 'the stalled upstream stream was closed');
  });
});
