import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertEnvelope, request } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';

/**
 * Coze sends the headers of a small JSON answer and part of its body, then nothing. The gateway
 * reads such an answer whole before relaying it (to spot a revoked token), so that read must be
 * bounded by the idle timeout and must end when the client leaves.
 */
const upstreamErrors = async (stack: Stack, kind: string) => (await stack.gateway.metrics.upstreamErrors.get()).values.find((v) => v.labels.kind === kind)?.value ?? 0;

/** Answers whose headers reached the gateway so far (the time-to-headers histogram's count). */
async function answersReceived(stack: Stack): Promise<number> {
  const { values } = await stack.gateway.metrics.upstreamResponse.get();
  return values.filter((v) => v.metricName?.endsWith('_count')).reduce((sum, v) => sum + v.value, 0);
}

describe('a JSON answer that stalls after its headers', () => {
  describe('with a 1 s idle timeout', () => {
    let stack: Stack;
    let auth: Record<string, string>;

    before(async () => {
      stack = await startStack({ env: { STREAM_IDLE_TIMEOUT_SECONDS: '1' } });
      auth = { authorization: `Bearer ${await stack.callerToken('alice')}` };
    });
    after(() => stack.close());
    beforeEach(() => stack.emulator.reset());

    it('json-stall-504: the client gets 504 upstream-timeout once the answer is idle for server.streamIdleTimeoutSeconds, and the upstream connection is closed', { timeout: 60_000 }, async () => {
      const before = await upstreamErrors(stack, 'idle_timeout');
      stack.emulator.setApiFault({ kind: 'stall-mid-body', partialBytes: 12, times: 1 });
      const res = await request(stack.url, { path: '/v1/bots/b', headers: auth });
      assertEnvelope(res, 504, 'upstream-timeout');
      assert.match(res.json().msg, /then nothing for server\.streamIdleTimeoutSeconds/);
      assert.equal(await upstreamErrors(stack, 'idle_timeout'), before + 1, 'counted as an idle timeout');
      assert.equal(stack.emulator.stalledBodies.length, 1);
      await stack.emulator.stalledBodies[0]?.closed;
      // The pool lost nothing: the next request goes through.
      assert.equal((await request(stack.url, { path: '/v1/bots/b', headers: auth })).status, 200);
    });
  });

  describe('with the default (300 s) idle timeout', () => {
    let stack: Stack;
    let authorization: string;

    before(async () => {
      stack = await startStack();
      authorization = `Bearer ${await stack.callerToken('alice')}`;
    });
    after(() => stack.close());
    beforeEach(() => stack.emulator.reset());

    it('json-stall-client-gone-closes-upstream: a client that leaves while the answer is read takes the upstream request with it', { timeout: 60_000 }, async () => {
      stack.emulator.setApiFault({ kind: 'stall-mid-body', times: 1 });
      const received = await answersReceived(stack);
      const req = http.get({ host: '127.0.0.1', port: Number(new URL(stack.url).port), path: '/v1/bots/b', headers: { authorization }, agent: false });
      req.on('error', () => undefined);
      let answered = false;
      req.on('response', () => (answered = true));
      // Wait (without a time bound: the test's timeout is the guard) until the gateway holds the
      // stalled answer's headers, then leave.
      while ((await answersReceived(stack)) === received) await new Promise((resolve) => setTimeout(resolve, 10));
      req.destroy();
      assert.equal(stack.emulator.stalledBodies.length, 1);
      // Without the fix this never settles: nothing watched the client after Coze's headers.
      await stack.emulator.stalledBodies[0]?.closed;
      assert.equal(answered, false, 'no status line was sent for an answer the gateway had not read');
      assert.equal((await request(stack.url, { path: '/v1/bots/b', headers: { authorization } })).status, 200);
    });
  });
});
