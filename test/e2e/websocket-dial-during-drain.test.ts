import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { WebSocketServer } from 'ws';
import { drain, trackInflight, type DrainReport, type DrainTarget } from '../../src/lifecycle/drain.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { refusedUpgrade, until } from '../helpers/websocket.js';

/**
 * An upgrade admitted before a drain whose Coze dial completes during it: the client is refused
 * with 503 draining (its handshake is not answered yet) and Coze's socket is closed with 1001,
 * whether the dial ends before the drain's last phase or after its 1001 broadcast, and the
 * refused upgrade counts no request against the budgets. Coze here
 * holds every handshake until the test lets it through.
 */
describe('WebSocket: a Coze dial that completes during a drain', () => {
  let stack: Stack | undefined;
  let coze: http.Server | undefined;
  afterEach(async () => {
    await stack?.close();
    coze?.closeAllConnections();
    coze?.close();
    stack = coze = undefined;
  });

  async function heldDial(): Promise<{ stack: Stack; release(): void; cozeCloseCodes: number[]; refusal: ReturnType<typeof refusedUpgrade> }> {
    const held: Array<() => void> = [];
    const cozeCloseCodes: number[] = [];
    const wss = new WebSocketServer({ noServer: true });
    coze = http.createServer();
    coze.on('upgrade', (req, socket, head) => held.push(() => wss.handleUpgrade(req, socket, head, (ws) => ws.on('close', (code) => cozeCloseCodes.push(code)))));
    coze.listen(0, '127.0.0.1');
    await once(coze, 'listening');
    stack = await startStack({ env: { COZE_WS_BASE_URL: `ws://127.0.0.1:${(coze.address() as AddressInfo).port}` } });
    const jwt = await stack.callerToken('alice');
    const refusal = refusedUpgrade(`${stack.url.replace('http', 'ws')}/v1/chat?bot_id=b`, { authorization: `Bearer ${jwt}` });
    await until(() => held.length === 1, 'the gateway is dialling Coze');
    return { stack, release: () => held.shift()?.(), cozeCloseCodes, refusal };
  }

  async function assertRefusedAsDraining(dial: Awaited<ReturnType<typeof heldDial>>, drained: Promise<DrainReport>): Promise<void> {
    const res = await dial.refusal;
    assert.equal(res.status, 503);
    assert.equal(res.gatewayError, 'draining');
    assert.deepEqual(JSON.parse(res.body).code, 503001);
    await until(() => dial.cozeCloseCodes.length === 1, 'Coze saw its socket closed');
    assert.deepEqual(dial.cozeCloseCodes, [1001], 'Coze is told the gateway is going away');
    assert.equal(dial.stack.gateway.websockets.size, 0, 'nothing was relayed');
    assert.equal(dial.stack.gateway.usage.counter.view('alice').day.requests, 0, 'an upgrade the gateway refused is not counted against the budgets');
    await drained;
  }

  it('ws-dial-completes-during-drain: the upgrade is refused with 503 draining and not counted, and the drain ends without waiting for it', async () => {
    const dial = await heldDial();
    const started = Date.now();
    const drained = drain(dial.stack.gateway, dial.stack.server, trackInflight(dial.stack.server), 10_000);
    dial.release();
    await assertRefusedAsDraining(dial, drained);
    assert.equal((await drained).outcome, 'drained');
    assert.ok(Date.now() - started < 7_000, 'the drain did not wait for its last phase');
  });

  it('ws-dial-completes-after-drain-broadcast: an upgrade whose dial ends after the 1001 broadcast is refused too, not cut with 1006 at the deadline', async () => {
    const dial = await heldDial();
    let broadcast!: () => void;
    const broadcastSent = new Promise<void>((resolve) => (broadcast = resolve));
    const { gateway } = dial.stack;
    const target: DrainTarget = {
      startDrain: () => gateway.startDrain(),
      streams: gateway.streams,
      websockets: {
        closeAll(code, reason) {
          broadcast();
          return gateway.websockets.closeAll(code, reason);
        },
        terminateAll: () => gateway.websockets.terminateAll(),
        idle: () => gateway.websockets.idle(),
      },
    };
    // The last phase starts at 750 ms, the deadline is at 2 s.
    const drained = drain(target, dial.stack.server, trackInflight(dial.stack.server), 2_000);
    await broadcastSent;
    dial.release();
    await assertRefusedAsDraining(dial, drained);
  });
});
