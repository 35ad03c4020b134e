import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DRAIN_STREAM_CODE, drain, trackInflight } from '../../src/lifecycle/drain.js';
import { request } from '../helpers/http.js';
import { go } from './parsers/go.js';
import { java } from './parsers/java.js';
import { js } from './parsers/js.js';
import { python } from './parsers/python.js';
import type { ParsedStream, SdkStreamReader } from './parsers/types.js';
import { BOT, ERROR_BOT, ERROR_WORKFLOW, FAILING_BOT, INTERRUPT_WORKFLOW, PING_WORKFLOW, startConformance, TOOL_BOT, WORKFLOW, type Conformance } from './support.js';

const READERS: readonly SdkStreamReader[] = [python, go, java, js];

const chatBody = (botId: string) => JSON.stringify({ bot_id: botId, user_id: 'x', stream: true, additional_messages: [{ role: 'user', content: 'hello there', content_type: 'text' }] });
const workflowBody = (workflowId: string) => JSON.stringify({ workflow_id: workflowId, parameters: {} });

/**
 * The gateway's streams, read by each official SDK's own reader (restated in parsers/): Coze's
 * events as relayed, and the final event the gateway writes when a stream cannot end normally
 * (drain 503001, idle 504002, reset 502002), also after a cut in the middle of an event. Every SDK
 * must get every complete event and then the error: chat readers raise it (JS yields an `error`
 * event), workflow readers hand over an `Error` event numbered after the last one.
 */
describe('the gateway’s SSE bytes, read by the Python, Go, Java and JS SDK parsers', () => {
  let c: Conformance;
  let headers: Record<string, string>;
  const post = async (path: string, body: string) => {
    const res = await request(c.stack.url, { method: 'POST', path, headers, body });
    assert.equal(res.status, 200, res.body);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    return Buffer.from(res.body);
  };

  before(async () => {
    c = await startConformance({ env: { STREAM_IDLE_TIMEOUT_SECONDS: '1' } });
    headers = { authorization: `Bearer ${await c.stack.callerToken('alice')}`, 'content-type': 'application/json' };
  });
  after(() => c.close());

  const each = (bytes: Buffer, framing: 'chat' | 'workflow', check: (parsed: ParsedStream, sdk: string) => void) => {
    for (const reader of READERS) check(reader[framing](bytes), reader.sdk);
  };

  it('Coze’s own chat streams: completed, failed, requires_action and a stream-level error', async () => {
    each(await post('/v3/chat', chatBody(BOT)), 'chat', (parsed, sdk) => {
      assert.deepEqual(parsed.outcome, { kind: 'end' }, sdk);
      const deltas = parsed.events.filter((e) => e.event === 'conversation.message.delta').map((e) => (e.data as { content: string }).content);
      assert.equal(deltas.join(''), 'Echo: hello there', sdk);
      assert.ok(parsed.events.some((e) => e.event === 'conversation.chat.completed'), sdk);
    });
    each(await post('/v3/chat', chatBody(FAILING_BOT)), 'chat', (parsed, sdk) => {
      assert.deepEqual(parsed.outcome, { kind: 'end' }, sdk);
      assert.equal((parsed.events.find((e) => e.event === 'conversation.chat.failed')?.data as { last_error: { code: number } }).last_error.code, 5000, sdk);
    });
    each(await post('/v3/chat', chatBody(TOOL_BOT)), 'chat', (parsed, sdk) => {
      assert.deepEqual(parsed.outcome, { kind: 'end' }, sdk);
      assert.ok(parsed.events.some((e) => e.event === 'conversation.chat.requires_action'), sdk);
    });
    each(await post('/v3/chat', chatBody(ERROR_BOT)), 'chat', (parsed, sdk) => assertChatError(parsed, sdk, 4013, 2));
  });

  it('Coze’s own workflow streams: Message and Done, Error with its id, Interrupt, PING', async () => {
    each(await post('/v1/workflow/stream_run', workflowBody(WORKFLOW)), 'workflow', (parsed, sdk) => {
      assert.deepEqual(parsed.outcome, { kind: 'end' }, sdk);
      const messages = parsed.events.filter((e) => e.event === 'Message').map((e) => (e.data as { content: string }).content);
      assert.equal(messages.join(''), 'Hello from the workflow', sdk);
    });
    each(await post('/v1/workflow/stream_run', workflowBody(ERROR_WORKFLOW)), 'workflow', (parsed, sdk) => assertWorkflowError(parsed, sdk, 4000, 1));
    each(await post('/v1/workflow/stream_run', workflowBody(INTERRUPT_WORKFLOW)), 'workflow', (parsed, sdk) => {
      assert.deepEqual(parsed.outcome, { kind: 'end' }, sdk);
      const interrupt = parsed.events.at(-1);
      assert.equal(interrupt?.id, 1, sdk);
      assert.equal(interrupt?.event, 'Interrupt', sdk);
    });
    each(await post('/v1/workflow/stream_run', workflowBody(PING_WORKFLOW)), 'workflow', (parsed, sdk) => {
      assert.deepEqual(parsed.outcome, { kind: 'end' }, sdk);
      assert.equal(parsed.events.filter((e) => e.event === 'Message').length, 3, sdk);
    });
    // A chatflow answers in chat framing and ends with a debug_url done.
    const flow = await post('/v1/workflows/chat', JSON.stringify({ workflow_id: WORKFLOW, additional_messages: [{ role: 'user', content: 'flow', content_type: 'text' }] }));
    assert.match(flow.toString(), /event:done\ndata:\{"debug_url":/);
    each(flow, 'chat', (parsed, sdk) => assert.deepEqual(parsed.outcome, { kind: 'end' }, sdk));
  });

  it('reset (502002), at an event boundary and inside an event', async () => {
    c.stack.emulator.setApiFault({ kind: 'reset-mid-stream', afterEvents: 3, times: 1 });
    each(await post('/v3/chat', chatBody(BOT)), 'chat', (parsed, sdk) => assertChatError(parsed, sdk, 502002, 3));
    c.stack.emulator.setApiFault({ kind: 'reset-mid-stream', afterEvents: 3, partialBytes: 40, times: 1 });
    each(await post('/v3/chat', chatBody(BOT)), 'chat', (parsed, sdk) => assertChatError(parsed, sdk, 502002, 3));
    c.stack.emulator.setApiFault({ kind: 'reset-mid-stream', afterEvents: 2, times: 1 });
    each(await post('/v1/workflow/stream_run', workflowBody(WORKFLOW)), 'workflow', (parsed, sdk) => assertWorkflowError(parsed, sdk, 502002, 2));
    for (const partialBytes of [3, 9, 20, 60]) {
      // Inside the id line, the event line, and the data line of the third event.
      c.stack.emulator.setApiFault({ kind: 'reset-mid-stream', afterEvents: 2, partialBytes, times: 1 });
      each(await post('/v1/workflow/stream_run', workflowBody(WORKFLOW)), 'workflow', (parsed, sdk) => assertWorkflowError(parsed, sdk, 502002, 2));
    }
  });

  it('idle timeout (504002), at an event boundary and inside an event', async () => {
    const stalls = [
      { path: '/v3/chat', body: chatBody(BOT), afterEvents: 2, partialBytes: 0 },
      { path: '/v3/chat', body: chatBody(BOT), afterEvents: 2, partialBytes: 17 },
      { path: '/v1/workflow/stream_run', body: workflowBody(WORKFLOW), afterEvents: 1, partialBytes: 0 },
      { path: '/v1/workflow/stream_run', body: workflowBody(WORKFLOW), afterEvents: 1, partialBytes: 25 },
    ];
    // One at a time through the fault, but the idle waits overlap.
    const pending: Array<Promise<void>> = [];
    for (const stall of stalls) {
      c.stack.emulator.setApiFault({ kind: 'stall-mid-stream', afterEvents: stall.afterEvents, partialBytes: stall.partialBytes, times: 1 });
      const streamed = post(stall.path, stall.body);
      await until(() => c.stack.emulator.requests.filter((r) => r.path === stall.path).length > 0 && c.stack.emulator.openStreams >= pending.length + 1);
      pending.push(
        streamed.then((bytes) => {
          if (stall.path === '/v3/chat') each(bytes, 'chat', (parsed, sdk) => assertChatError(parsed, sdk, 504002, stall.afterEvents));
          else each(bytes, 'workflow', (parsed, sdk) => assertWorkflowError(parsed, sdk, 504002, stall.afterEvents));
        }),
      );
    }
    await Promise.all(pending);
  });

  it('drain (503001): streams that outlive the drain window', async () => {
    const inflight = trackInflight(c.stack.server);
    const pacer = c.stack.emulator.pace();
    const chat = post('/v3/chat', chatBody(BOT));
    const workflow = post('/v1/workflow/stream_run', workflowBody(WORKFLOW));
    pacer.release(4);
    await pacer.waitForSent(4);
    await until(() => c.stack.gateway.streams.size === 2);
    assert.equal((await drain(c.stack.gateway, c.stack.server, inflight, 50)).outcome, 'deadline');
    c.stack.emulator.unpace();
    const chatBytes = await chat;
    const workflowBytes = await workflow;
    assert.match(chatBytes.toString(), new RegExp(`event:error\\ndata:\\{"code":${DRAIN_STREAM_CODE},`));
    each(chatBytes, 'chat', (parsed, sdk) => assertChatError(parsed, sdk, DRAIN_STREAM_CODE, chatBytes.toString().split('\n\n').length - 2));
    const sent = workflowBytes.toString().match(/^id: \d+$/gm)?.length ?? 0;
    each(workflowBytes, 'workflow', (parsed, sdk) => assertWorkflowError(parsed, sdk, DRAIN_STREAM_CODE, sent - 1));
  });
});

/** Every complete event before the error was delivered, then the error surfaced as the SDK surfaces it. */
function assertChatError(parsed: ParsedStream, sdk: string, code: number, eventsBefore: number): void {
  const what = `${sdk}: ${JSON.stringify(parsed)}`;
  if (sdk === 'js') {
    assert.deepEqual(parsed.outcome, { kind: 'end' }, what);
    assert.equal(parsed.events.length, eventsBefore + 1, what);
    assert.equal(parsed.events.at(-1)?.event, 'error', what);
    assert.equal((parsed.events.at(-1)?.data as { code: number }).code, code, what);
    return;
  }
  assert.equal(parsed.events.length, eventsBefore, what);
  assert.equal(parsed.outcome.kind, 'error', what);
  assert.match((parsed.outcome as { message: string }).message, new RegExp(`"code":${code}\\b`), what);
}

/** The `eventsBefore` complete events (ids from 0), then an Error event numbered after them; no reader fails. */
function assertWorkflowError(parsed: ParsedStream, sdk: string, code: number, eventsBefore: number): void {
  const what = `${sdk}: ${JSON.stringify(parsed)}`;
  assert.deepEqual(parsed.outcome, { kind: 'end' }, what);
  assert.deepEqual(parsed.events.map((e) => e.id), Array.from({ length: eventsBefore + 1 }, (_, i) => i), what);
  const last = parsed.events.at(-1);
  assert.equal(last?.event, 'Error', what);
  assert.equal((last?.data as { error_code: number }).error_code, code, what);
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check());
}
