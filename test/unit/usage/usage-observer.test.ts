import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createUsageObservers, readUsage, type OpenChat, type TokenCounts } from '../../../src/usage/usage-observer.js';
import { createJsonFieldScanner } from '../../../src/usage/usage-scan.js';
import { createSseObserver } from '../../../src/proxy/rewrite-response.js';
import { createEventGate } from '../../../src/proxy/sse-framing.js';
import { ENDPOINTS } from '../../../src/policy/endpoints.js';

/** The endpoint table's entry of that name: the usage shape comes from there. */
const endpoint = (name: string) => ENDPOINTS.find((e) => e.name === name) ?? assert.fail(`no endpoint ${name}`);

function watcher() {
  const counts: Array<{ route: string; key: string; counts: TokenCounts }> = [];
  const { watch } = createUsageObservers({ onCount: (route, key, c) => counts.push({ route, key, counts: c }) });
  return { watch, counts };
}

describe('usage observers', () => {
  it("reads Coze's usage object defensively", () => {
    assert.deepEqual(readUsage({ token_count: 10, output_count: 6, input_count: 4 }), { input: 4, output: 6, total: 10 });
    assert.deepEqual(readUsage({ input_count: 4, output_count: 6 }), { input: 4, output: 6, total: 10 }, 'a missing token_count is their sum');
    assert.deepEqual(readUsage({ token_count: 7 }), { input: 0, output: 0, total: 7 });
    for (const junk of [undefined, null, 'x', {}, { token_count: -1 }, { token_count: '10' }, { token_count: 1.5 }, { token_count: Number.MAX_SAFE_INTEGER + 2 }]) {
      assert.equal(readUsage(junk), undefined, JSON.stringify(junk));
    }
  });

  it('counts a chat once it has ended, once per chat id, whatever the route that sees it', () => {
    const { watch, counts } = watcher();
    const chat = (status: string) => Buffer.from(JSON.stringify({ code: 0, data: { id: 'c1', status, usage: { token_count: 5, input_count: 2, output_count: 3 } } }));
    const first = watch(endpoint('chat'), 'jwt:alice');
    first?.onBody(chat('in_progress'), true);
    first?.end();
    assert.equal(counts.length, 0, 'a chat in progress reports more later');
    const polled = watch(endpoint('chat.retrieve'), 'jwt:alice');
    polled?.onBody(chat('completed'), true);
    polled?.end();
    const again = watch(endpoint('chat.retrieve'), 'jwt:alice');
    again?.onBody(chat('completed'), true);
    assert.equal(again?.counted, undefined);
    assert.deepEqual(counts, [{ route: 'chat.retrieve', key: 'jwt:alice', counts: { input: 2, output: 3, total: 5 } }]);
    assert.deepEqual(polled?.counted, { input: 2, output: 3, total: 5 });
    assert.equal(watch(endpoint('conversation.list'), 'jwt:alice'), undefined, 'routes without usage get no watcher');
  });

  it('counts a failed chat that reports usage, and a realtime frame only when it is a chat end', () => {
    const { watch, counts } = watcher();
    const ws = watch(endpoint('ws.chat'), 'jwt:bob');
    ws?.onFrame(Buffer.from(JSON.stringify({ event_type: 'conversation.message.delta', data: { content: 'conversation.chat.completed' } })));
    ws?.onFrame(Buffer.from('not json conversation.chat.completed'));
    ws?.onFrame(Buffer.from(JSON.stringify({ event_type: 'conversation.chat.failed', data: { id: 'c9', status: 'failed', usage: { token_count: 3, input_count: 3, output_count: 0 } } })));
    ws?.end();
    assert.deepEqual(counts.map((c) => c.counts.total), [3]);
  });

  it('parses defensively: a chat-end event without a status still counts, and a workflow Done event carrying usage is taken into account', () => {
    const { watch, counts } = watcher();
    const sse = watch(endpoint('chat'), 'jwt:erin');
    sse?.sse.onData('conversation.chat.completed', JSON.stringify({ id: 'c-nostatus', usage: { token_count: 6, input_count: 1, output_count: 5 } }));
    sse?.sse.onData('conversation.chat.completed', 'not json');
    sse?.end();
    const ws = watch(endpoint('ws.chat'), 'jwt:erin');
    ws?.onFrame(Buffer.from(JSON.stringify({ event_type: 'conversation.chat.completed', data: { id: 'c-ws', usage: { token_count: 2 } } })));
    ws?.end();
    const wf = watch(endpoint('workflow.stream_run'), 'jwt:erin');
    wf?.sse.onData('message', JSON.stringify({ content: 'a', usage: { token_count: 4, input_count: 2, output_count: 2 } }));
    wf?.sse.onData('done', JSON.stringify({ debug_url: 'x', usage: { token_count: 11, input_count: 3, output_count: 8 } }));
    wf?.end();
    assert.deepEqual(counts.map((c) => c.counts.total), [6, 2, 11]);
  });

  it('counts the largest usage of a workflow stream once, when it ends (a cut stream counts what it saw)', () => {
    const { watch, counts } = watcher();
    const stream = watch(endpoint('workflow.stream_run'), 'jwt:carol');
    assert.ok(stream?.sse.events.has('message'));
    stream?.sse.onData('message', JSON.stringify({ content: 'a', usage: { token_count: 4, input_count: 2, output_count: 2 } }));
    stream?.sse.onData('message', JSON.stringify({ content: 'b' }));
    stream?.sse.onData('message', JSON.stringify({ content: 'c', usage: { token_count: 9, input_count: 2, output_count: 7 } }));
    assert.equal(counts.length, 0, 'nothing before the end');
    stream?.end();
    stream?.end();
    assert.deepEqual(counts.map((c) => c.counts), [{ input: 2, output: 7, total: 9 }]);
  });

  it('reads the usage of a large workflow answer chunk by chunk, however it is cut', () => {
    const output = JSON.stringify({ text: 'x'.repeat(40_000), tricky: '"usage": {"token_count": 999}' });
    const body = Buffer.from(JSON.stringify({ code: 0, data: output, execute_id: 'e1', usage: { token_count: 12, input_count: 5, output_count: 7 }, detail: { logid: 'l' } }));
    for (const size of [1, 7, 64, 1000, 16_384]) {
      const { watch, counts } = watcher();
      const run = watch(endpoint('workflow.run'), 'jwt:dave');
      for (let i = 0; i < body.length; i += size) run?.onBody(body.subarray(i, i + size), false);
      run?.end();
      assert.deepEqual(counts.map((c) => c.counts), [{ input: 5, output: 7, total: 12 }], `chunks of ${size}`);
    }
  });

  it('large-chat-answer-held-to-chat-rules: a chat answer over the inspected size counts only once the chat has ended, once per chat id, whatever ids its tool calls carry', () => {
    const { watch, counts } = watcher();
    const big = (status: string) =>
      Buffer.from(
        JSON.stringify({
          code: 0,
          data: {
            required_action: { type: 'submit_tool_outputs', submit_tool_outputs: { tool_calls: [{ id: 'call-1', status: 'completed', function: { arguments: 'x'.repeat(40_000) } }] } },
            id: 'chat-big',
            status,
            usage: { token_count: 500, input_count: 200, output_count: 300 },
          },
        }),
      );
    const poll = (status: string) => {
      const seen = watch(endpoint('chat.retrieve'), 'jwt:erin');
      const body = big(status);
      for (let i = 0; i < body.length; i += 4096) seen?.onBody(body.subarray(i, i + 4096), false);
      seen?.end();
    };
    poll('requires_action');
    poll('requires_action');
    assert.equal(counts.length, 0, 'a chat waiting for tool outputs reports more later');
    poll('completed');
    poll('completed');
    assert.deepEqual(counts.map((c) => c.counts), [{ input: 200, output: 300, total: 500 }]);
  });

  it('sse-long-event-usage: a workflow stream event too long to hold (a large output, usage after it) still gives its usage, however it is cut', () => {
    for (const kib of [100, 300, 600, 2048]) {
      for (const chunkSize of [1000, 65_536]) {
        const { watch, counts } = watcher();
        const usage = watch(endpoint('workflow.stream_run'), 'jwt:dave');
        assert.ok(usage);
        // As the relay feeds it: through the event gate, then the observer.
        const gate = createEventGate();
        const observer = createSseObserver(() => {}, usage.sse);
        const message = { content: 'x'.repeat(kib * 1024), node_title: 'End', node_is_finish: true, usage: { token_count: 900, output_count: 600, input_count: 300 } };
        const stream = Buffer.from(`id: 0\nevent: Message\ndata: ${JSON.stringify(message)}\n\nid: 1\nevent: Done\ndata: {}\n\n`);
        for (let i = 0; i < stream.length; i += chunkSize) observer.observe(gate.pass(stream.subarray(i, i + chunkSize)));
        observer.observe(gate.rest());
        usage.end();
        assert.deepEqual(counts.map((c) => c.counts.total), [900], `${kib} KiB in chunks of ${chunkSize}`);
      }
    }
  });

  it('abandoned-chat-end-counts-the-rest: a chat counted as abandoned while waiting for tool outputs counts only what its end adds, once', () => {
    const counted: Array<{ total: number; id: string | undefined }> = [];
    const { watch, countChat } = createUsageObservers({ onCount: (_r, _k, c, id) => counted.push({ total: c.total, id }), onOpenChat: () => {} });
    const chat: OpenChat = { route: 'chat', sessionName: 'jwt:ann', tokenKey: 'jwt:ann', chatId: 't1', conversationId: 'conv-t1' };
    const waiting = { id: 't1', conversation_id: 'conv-t1', status: 'requires_action', usage: { token_count: 10, input_count: 6, output_count: 4 } };
    assert.equal(countChat(chat, waiting, true), true);
    assert.equal(countChat(chat, waiting, true), false, 'abandoned once');
    const end = watch(endpoint('chat.submit_tool_outputs'), 'jwt:ann');
    end?.sse.onData('conversation.chat.completed', JSON.stringify({ id: 't1', conversation_id: 'conv-t1', status: 'completed', usage: { token_count: 40, input_count: 11, output_count: 29 } }));
    end?.end();
    assert.deepEqual(end?.counted, { input: 5, output: 25, total: 30 });
    watch(endpoint('chat.retrieve'), 'jwt:ann')?.onBody(Buffer.from(JSON.stringify({ code: 0, data: { id: 't1', status: 'completed', usage: { token_count: 40 } } })), true);
    assert.deepEqual(counted, [{ total: 10, id: 'chat:t1:abandoned' }, { total: 30, id: 'chat:t1' }], 'the end counted once, under the chat id, for what it added');
  });

  it('chat-follow-up-handover: a chat seen running but not ended is handed over once, a stream cut before its end too; an ended or counted one is not', () => {
    const opened: OpenChat[] = [];
    const counts: TokenCounts[] = [];
    const { watch, countChat } = createUsageObservers({ onCount: (_r, _k, c) => counts.push(c), onOpenChat: (c) => opened.push(c) });
    const body = (id: string, status: string) => Buffer.from(JSON.stringify({ code: 0, data: { id, conversation_id: `conv-${id}`, status } }));
    const json = watch(endpoint('chat'), 'jwt:ann', 'jwt:ann|consumer|');
    json?.onBody(body('j1', 'in_progress'), true);
    json?.end();
    assert.deepEqual(opened, [{ route: 'chat', sessionName: 'jwt:ann', tokenKey: 'jwt:ann|consumer|', chatId: 'j1', conversationId: 'conv-j1' }], 'no usage in the answer, still read: it is a chat answer');

    // A stream cut after its start events, and one that ended.
    const cut = watch(endpoint('chat'), 'jwt:ann');
    assert.ok(cut?.sse.events.has('conversation.chat.created'));
    cut?.sse.onData('conversation.chat.created', JSON.stringify({ id: 's1', conversation_id: 'conv-s1', status: 'created' }));
    cut?.sse.onData('conversation.chat.in_progress', JSON.stringify({ id: 's1', conversation_id: 'conv-s1', status: 'in_progress' }));
    cut?.end();
    const whole = watch(endpoint('chat'), 'jwt:ann');
    whole?.sse.onData('conversation.chat.created', JSON.stringify({ id: 's2', conversation_id: 'conv-s2', status: 'created' }));
    whole?.sse.onData('conversation.chat.completed', JSON.stringify({ id: 's2', conversation_id: 'conv-s2', status: 'completed', usage: { token_count: 4 } }));
    whole?.end();
    assert.deepEqual(opened.map((c) => c.chatId), ['j1', 's1']);

    // The gateway's own retrieve counts through the same id memory as a client's.
    const ended = { id: 's1', conversation_id: 'conv-s1', status: 'completed', usage: { token_count: 9, input_count: 4, output_count: 5 } };
    assert.equal(countChat(opened[1] as OpenChat, { ...ended, status: 'in_progress' }), false, 'still running: not counted');
    assert.equal(countChat(opened[1] as OpenChat, ended), true);
    const client = watch(endpoint('chat.retrieve'), 'jwt:ann');
    client?.onBody(body('s1', 'in_progress'), true);
    client?.onBody(Buffer.from(JSON.stringify({ code: 0, data: ended })), true);
    assert.deepEqual(counts.map((c) => c.total), [4, 9], 'counted once; a counted chat is not handed over again');
    assert.equal(opened.length, 2, 'an answer showing a chat this replica counted already running (an older answer) hands nothing over');
    watch(endpoint('chat.retrieve'), 'jwt:ann')?.onBody(body('j1', 'in_progress'), true);
    assert.deepEqual(opened.map((c) => c.chatId), ['j1', 's1', 'j1'], 'a client poll of a chat still running hands it over again (it puts the follow-up off)');

    // Without follow-ups, a chat answer without usage is not even parsed, and stream start events are not asked for.
    const plain = createUsageObservers({ onCount: () => {} });
    assert.equal(plain.watch(endpoint('chat'), 'jwt:ann')?.sse.events.has('conversation.chat.created'), false);
  });

  it('the scanner ignores keys inside strings and takes the first occurrence', () => {
    const scanner = createJsonFieldScanner();
    scanner.push(Buffer.from('{"data":"{\\"usage\\":{\\"token_count\\":1}}","run_mode":2,"execute_status":"Success","execute_id":"e\\"1","usage":{"token_count":2},"usage":{"token_count":3}}'));
    assert.deepEqual(scanner.fields, { run_mode: 2, execute_status: 'Success', execute_id: 'e"1', usage: { token_count: 2 } });
  });
});
