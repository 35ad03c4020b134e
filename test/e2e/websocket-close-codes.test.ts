import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { startStack, type Stack } from '../helpers/stack.js';
import { closed, nextMessage, openWebSocket, until } from '../helpers/websocket.js';

/**
 * Issue 16 item 10: what each end of a relayed WebSocket learns when the other one goes. An
 * abrupt TCP drop (no close frame) is 1006 locally, a code no close frame may carry: the client
 * gets 1011 when Coze vanished, Coze gets 1001 when the client vanished. A protocol fault is the
 * faulty side's (1007, 1002) and reaches the other side as a drop would. An oversized frame is
 * 1009 on both sides. Codes sent in close frames pass through as they are.
 */
describe('WebSocket close codes', () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  async function relayed(): Promise<{ stack: Stack; ws: Awaited<ReturnType<typeof openWebSocket>> }> {
    stack = await startStack();
    const jwt = await stack.callerToken('closer');
    const ws = await openWebSocket(`${stack.url.replace('http', 'ws')}/v1/chat?bot_id=b`, { authorization: `Bearer ${jwt}` });
    ws.on('error', () => undefined);
    await until(() => stack?.emulator.openWebSockets === 1, 'the upstream socket is open');
    return { stack, ws };
  }

  it('ws-coze-vanished-is-1011: a TCP drop on the Coze side reaches the client as 1011, not 1000', async () => {
    const { stack, ws } = await relayed();
    const code = closed(ws);
    // The emulator's close destroys its sockets without a close frame: Coze vanished.
    await stack.emulator.close();
    assert.equal(await code, 1011);
  });

  it('ws-client-vanished-is-1001: a TCP drop on the client side reaches Coze as 1001, not 1000', async () => {
    const { stack, ws } = await relayed();
    ws.terminate();
    await until(() => stack.emulator.openWebSockets === 0, 'the upstream socket closed');
    assert.equal(stack.emulator.websockets[0]?.closeCode, 1001);
  });

  it('ws-oversized-frame-is-1009-both-ways: the client and Coze both get 1009', async () => {
    const { stack, ws } = await relayed();
    const code = closed(ws);
    ws.send(Buffer.alloc(16 * 1024 * 1024 + 1, 0x20));
    assert.equal(await code, 1009);
    await until(() => stack.emulator.openWebSockets === 0, 'the upstream socket closed');
    assert.equal(stack.emulator.websockets[0]?.closeCode, 1009);
  });

  // A text frame that is not UTF-8.
  const INVALID_UTF8 = Buffer.from([0x7b, 0xff, 0x7d]);

  it('ws-coze-protocol-fault-is-1011: Coze sending invalid UTF-8 gets 1007 and the client 1011, not 1007', async () => {
    const { stack, ws } = await relayed();
    const code = closed(ws);
    stack.emulator.sendOnWebSocket(0, INVALID_UTF8, false);
    assert.equal(await code, 1011);
    await until(() => stack.emulator.openWebSockets === 0, 'the upstream socket closed');
    assert.equal(stack.emulator.websockets[0]?.closeCode, 1007);
  });

  it('ws-client-protocol-fault-is-1001: the client sending invalid UTF-8 gets 1007 and Coze 1001, not 1007', async () => {
    const { stack, ws } = await relayed();
    const code = closed(ws);
    ws.send(INVALID_UTF8, { binary: false });
    assert.equal(await code, 1007);
    await until(() => stack.emulator.openWebSockets === 0, 'the upstream socket closed');
    assert.equal(stack.emulator.websockets[0]?.closeCode, 1001);
  });

  it('codes sent in close frames pass through unchanged', async () => {
    const { stack, ws } = await relayed();
    const echo = nextMessage(ws);
    ws.send('{"event_type":"ping"}');
    await echo;
    ws.close(4000, 'done here');
    await closed(ws);
    await until(() => stack.emulator.openWebSockets === 0, 'the upstream socket closed');
    assert.equal(stack.emulator.websockets[0]?.closeCode, 4000);
  });
});
