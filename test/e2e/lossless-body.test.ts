import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertEnvelope, request } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';
import { closed, openWebSocket, until } from '../helpers/websocket.js';

/**
 * Issue 14: bodies on policy routes used to go through JSON.parse/JSON.stringify, so
 * 12345678901234567890 reached Coze as 12345678901234567000 and 1.0 as 1. The gateway now changes
 * the identity field and nothing else; Coze (the emulator) records the bytes it received.
 */
describe('lossless-body-rewrite: only the identity fields change on their way to Coze', () => {
  let stack: Stack;
  let headers: Record<string, string>;

  before(async () => {
    stack = await startStack();
    headers = { authorization: `Bearer ${await stack.callerToken('alice')}`, 'content-type': 'application/json' };
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  const numbers = '"order_id": 9223372036854775808, "serial":12345678901234567890, "ratio": 1.0, "huge": 1e400, "tiny": -0.0e-0';
  const cases: Array<{ path: string; sent: string; expected: string }> = [
    {
      path: '/v1/workflow/run',
      sent: `{"workflow_id":"7","parameters":{ ${numbers}, "note":"caf\\u00e9 \\ud83d\\ude00", "nest":[[[[{"a":[1.10]}]]]]}}`,
      expected: `{"workflow_id":"7","parameters":{ ${numbers}, "note":"caf\\u00e9 \\ud83d\\ude00", "nest":[[[[{"a":[1.10]}]]]]},"ext":{"user_id":"alice"}}`,
    },
    {
      path: '/v1/workflow/run',
      sent: `{"workflow_id":"7","ext":{"user_id":"bob","latitude":"1.0"},"parameters":{${numbers}}}`,
      expected: `{"workflow_id":"7","ext":{"user_id":"alice","latitude":"1.0"},"parameters":{${numbers}}}`,
    },
    {
      path: '/v3/chat',
      sent: `{\n  "bot_id": "7000000000000000001",\n  "user_id": "bob",\n  "stream": false,\n  "custom_variables": {"n": "1.0"},\n  "meta_data": {"k": "\\u0041"},\n  "parameters": {${numbers}},\n  "additional_messages": [{"role":"user","content":"hi","content_type":"text"}]\n}`,
      expected: `{\n  "bot_id": "7000000000000000001",\n  "user_id": "alice",\n  "stream": false,\n  "custom_variables": {"n": "1.0"},\n  "meta_data": {"k": "\\u0041"},\n  "parameters": {${numbers}},\n  "additional_messages": [{"role":"user","content":"hi","content_type":"text"}]\n}`,
    },
  ];

  for (const [i, c] of cases.entries()) {
    it(`${c.path} (${i + 1}): Coze receives the sent bytes with only the user id forced`, async () => {
      const res = await request(stack.url, { method: 'POST', path: c.path, headers, body: c.sent });
      assert.equal(res.status, 200, res.body);
      const seen = stack.emulator.requests.find((r) => r.path === c.path);
      assert.equal(seen?.rawBody, c.expected);
      assert.equal(seen?.headers['content-length'], String(Buffer.byteLength(c.expected)));
    });
  }

  it('a route that forces nothing forwards the bytes unchanged', async () => {
    const sent = '{"workflow_id":"7", "event_id":"e", "resume_data":"{\\"n\\":12345678901234567890}", "interrupt_type": 2.0}';
    await request(stack.url, { method: 'POST', path: '/v1/workflows/resume', headers, body: sent });
    assert.equal(stack.emulator.requests.find((r) => r.path === '/v1/workflows/resume')?.rawBody, sent);
  });

  it('json-depth-limit-400: a body nested deeper than 256 levels is 400 bad-json-body and never reaches Coze', async () => {
    const body = `{"workflow_id":"7","parameters":{"a":${'['.repeat(50_000)}${']'.repeat(50_000)}}}`;
    const res = await request(stack.url, { method: 'POST', path: '/v1/workflow/run', headers, body });
    assertEnvelope(res, 400, 'bad-json-body');
    assert.match(res.json().msg, /nested deeper than 256 levels/);
    assertNothingReachedCoze(stack);
  });

  it('chat.update keeps its bytes too, except the forced user id', async () => {
    const ws = await openWebSocket(`${stack.url.replace('http', 'ws')}/v1/chat?bot_id=b`, { authorization: headers.authorization as string });
    const frame = `{"id":"1","event_type":"chat.update","data":{"chat_config":{"user_id":"bob","parameters":{${numbers}}},"turn_detection":{"type":"server_vad"}}}`;
    ws.send(frame);
    await until(() => (stack.emulator.websockets[0]?.frames.length ?? 0) > 0, 'the frame reached Coze');
    assert.equal(stack.emulator.websockets[0]?.frames[0]?.data.toString(), frame.replace('"user_id":"bob"', '"user_id":"alice"'));
    ws.close();
    await closed(ws);
  });
});
