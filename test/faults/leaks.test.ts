import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { abortedStream as abortStream, abortedUpload as abortUpload, inBatches } from '../helpers/aborts.js';
import { startStack, type Stack } from '../helpers/stack.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Clients that leave mid-way, by the thousand. Afterwards the gauges are back at zero, every
 * socket is closed on both sides, and the heap has not grown with them. (bench/ measures the
 * memory figures; this asserts the counts.)
 */
describe('leaks', () => {
  let stack: Stack;
  let agent: http.Agent;
  let bearer: string;
  const port = () => Number(new URL(stack.url).port);

  before(async () => {
    stack = await startStack({ env: { LOG_LEVEL: 'warn' } });
    bearer = `Bearer ${await stack.callerToken('alice')}`;
    agent = new http.Agent({ keepAlive: false, maxSockets: 100 });
  });
  after(async () => {
    agent.destroy();
    await stack.close();
  });

  const target = () => ({ port: port(), agent, authorization: bearer });
  const abortedStream = () => abortStream(target());
  const abortedUpload = () => abortUpload(target());

  /** The emulator's request log and the captured log lines are the harness's, not the gateway's. */
  function forgetHarnessRecords(): void {
    stack.emulator.reset();
    stack.logs.length = 0;
  }

  async function settled(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const connections = await new Promise<number>((r) => stack.server.getConnections((_e, n) => r(n)));
      const active = (await stack.gateway.metrics.activeStreams.get()).values[0]?.value ?? 0;
      if (connections === 0 && active === 0 && stack.emulator.openStreams === 0) return;
      await sleep(25);
    }
  }

  it('2,000 aborted streams and 2,000 aborted uploads leave no stream, socket or heap behind', async () => {
    stack.emulator.pace();
    await inBatches(100, abortedStream);
    await inBatches(100, abortedUpload);
    await settled();
    forgetHarnessRecords();
    gc();
    const heapBefore = process.memoryUsage().heapUsed;

    await inBatches(2000, abortedStream);
    await inBatches(2000, abortedUpload);
    await settled();
    stack.emulator.unpace();

    const connections = await new Promise<number>((r) => stack.server.getConnections((_e, n) => r(n)));
    assert.equal(connections, 0, 'client sockets closed');
    assert.equal((await stack.gateway.metrics.activeStreams.get()).values[0]?.value ?? 0, 0, 'active_streams back at zero');
    assert.equal(stack.emulator.openStreams, 0, 'every upstream stream was closed');
    forgetHarnessRecords();
    gc();
    await sleep(50);
    gc();
    const growthMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    // The emulator, the gateway and this test share one heap: 4,000 requests leaving even 5 KiB each would show.
    assert.ok(growthMiB < 16, `heap grew by ${growthMiB.toFixed(1)} MiB`);
  });
});
