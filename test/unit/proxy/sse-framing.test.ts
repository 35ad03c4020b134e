import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createSseObserver } from '../../../src/proxy/rewrite-response.js';
import { createEventGate, finalEvent } from '../../../src/proxy/sse-framing.js';

const stream = 'id: 0\nevent: Message\ndata: {"content":"héllo"}\n\nid: 1\nevent: Message\ndata: {"content":"x"}\n\nid: 2\nevent: Done\ndata: {}\n\n';

describe('sse-framing: complete events only, byte for byte', () => {
  it('passes exactly the bytes of complete events, wherever the chunks are cut', () => {
    const bytes = Buffer.from(stream);
    for (let cut = 1; cut < bytes.length; cut++) {
      for (const second of [cut + 1, cut + 7, bytes.length]) {
        const gate = createEventGate();
        const passed = [bytes.subarray(0, cut), bytes.subarray(cut, second), bytes.subarray(second)].map((c) => gate.pass(c));
        const joined = Buffer.concat([...passed, gate.rest()]);
        assert.deepEqual(joined, bytes, `cut at ${cut}/${second}`);
        // Each passed piece ends at an event boundary.
        for (const piece of passed) if (piece.length > 0) assert.equal(piece.subarray(-2).toString(), '\n\n', `cut at ${cut}/${second}`);
      }
    }
  });

  it('holds an unfinished event, and a cut there leaves the client at a boundary', () => {
    const gate = createEventGate();
    assert.equal(gate.pass(Buffer.from('id: 0\nevent: Message\ndata: {"a":1}\n\nid: 1\nevent: Mess')).toString(), 'id: 0\nevent: Message\ndata: {"a":1}\n\n');
    assert.equal(gate.atBoundary, true);
    assert.equal(gate.pass(Buffer.from('age\ndata: {}')).length, 0);
    assert.equal(gate.pass(Buffer.from('\r\n\r\n')).toString(), 'id: 1\nevent: Message\ndata: {}\r\n\r\n', 'CRLF framing ends events too');
  });

  it('passes an event larger than the bound unfinished, and then ends the gateway event on a fresh line', () => {
    const gate = createEventGate(64);
    const big = `event:conversation.audio.delta\ndata:{"content":"${'A'.repeat(100)}`;
    assert.equal(gate.pass(Buffer.from(big)).toString(), big);
    assert.equal(gate.atBoundary, false);
    assert.equal(gate.atLineStart, false);
    assert.equal(finalEvent({ workflowFraming: false, lastId: undefined, gate, code: 502002, message: 'cut' }), '\n\nevent:error\ndata:{"code":502002,"msg":"cut"}\n\n');
    assert.equal(gate.pass(Buffer.from('"}\n')).length, 0, 'short and unfinished: held again');
    gate.pass(Buffer.from(`${'y'.repeat(70)}\n`));
    assert.equal(finalEvent({ workflowFraming: false, lastId: undefined, gate, code: 502002, message: 'cut' }), '\nevent:error\ndata:{"code":502002,"msg":"cut"}\n\n');
  });

  it('numbers the workflow Error event after the last id, from 0 when there was none', () => {
    const gate = createEventGate();
    assert.equal(finalEvent({ workflowFraming: true, lastId: undefined, gate, code: 503001, message: 'bye' }), 'id: 0\nevent: Error\ndata: {"error_code":503001,"error_message":"bye"}\n\n');
    assert.equal(finalEvent({ workflowFraming: true, lastId: 41, gate, code: 503001, message: 'bye' }), 'id: 42\nevent: Error\ndata: {"error_code":503001,"error_message":"bye"}\n\n');
  });

  it('the observer remembers the last numeric id across chunks and reports error codes', () => {
    const codes: Array<number | string> = [];
    const observer = createSseObserver((code) => codes.push(code));
    observer.observe(Buffer.from('id: 7\nevent: Message\ndata: {}\n\nid'));
    assert.equal(observer.lastId, 7);
    observer.observe(Buffer.from(': 8\nevent: Error\ndata: {"error_code":4000,"error_message":"x"}\n\nid: not-a-number\n'));
    assert.equal(observer.lastId, 8);
    assert.deepEqual(codes, [4000]);
  });
});
