import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import diagnosticsChannel from 'node:diagnostics_channel';
import { after, before, describe, it } from 'node:test';
import { DEFERRED_STEPS } from '../../src/maybe.js';
import { request } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';

/**
 * What happens inside the gateway's synchronous handling of one request (the server's 'request'
 * event): how many promises are created, and whether the request is handed to undici (its
 * `undici:request:create` channel publishes synchronously inside Pool.dispatch).
 */
function probe(stack: Stack) {
  let inside = false;
  const seen = { promises: 0, dispatched: 0 };
  const hook = createHook({
    init(_id, type) {
      if (inside && type === 'PROMISE') seen.promises += 1;
    },
  });
  const onCreate = () => {
    if (inside) seen.dispatched += 1;
  };
  diagnosticsChannel.subscribe('undici:request:create', onCreate);
  const enter = () => {
    seen.promises = 0;
    seen.dispatched = 0;
    inside = true;
    hook.enable();
  };
  const leave = () => {
    hook.disable();
    inside = false;
  };
  // Listeners run in order, synchronously: enter, the gateway's handler, leave.
  stack.server.prependListener('request', enter);
  stack.server.on('request', leave);
  return {
    /** The counts of the last request's synchronous handling. */
    last: () => ({ ...seen }),
    stop() {
      diagnosticsChannel.unsubscribe('undici:request:create', onCreate);
      stack.server.off('request', enter);
      stack.server.off('request', leave);
    },
  };
}

const PATH = '/v1/conversations?bot_id=bot-ok';

describe('the cached request path is synchronous (issue 17, item 2)', () => {
  let stack: Stack;
  let deferred: Stack;
  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok' } });
    deferred = await startStack({ steps: DEFERRED_STEPS, env: { ALLOWED_BOT_IDS: 'bot-ok' } });
  });
  after(async () => {
    await stack?.close();
    await deferred?.close();
  });

  it('cached-path-no-promises: with the JWT verified, the limit local and the token fresh, a GET reaches the forwarder with no promise', async () => {
    const watch = probe(stack);
    try {
      const auth = { authorization: `Bearer ${await stack.callerToken('alice')}` };
      const first = await request(stack.url, { path: PATH, headers: auth });
      assert.equal(first.status, 200, first.body);
      // The first request waited for the JWT check and the mint: not forwarded synchronously,
      // which shows the probe can tell the two apart.
      assert.equal(watch.last().dispatched, 0, 'the first request verifies the JWT and mints first');
      assert.ok(watch.last().promises > 0);

      const second = await request(stack.url, { path: PATH, headers: auth });
      assert.equal(second.status, 200, second.body);
      assert.equal(second.json().code, 0);
      assert.deepEqual(watch.last(), { promises: 0, dispatched: 1 }, 'forwarded within the request event, no promise created');
    } finally {
      watch.stop();
    }
  });

  it('deferred-steps-really-defer: with DEFERRED_STEPS the same cached request is forwarded later, so async-steps.test.ts runs the slow shape', async () => {
    const watch = probe(deferred);
    try {
      const auth = { authorization: `Bearer ${await deferred.callerToken('alice')}` };
      assert.equal((await request(deferred.url, { path: PATH, headers: auth })).status, 200);
      const again = await request(deferred.url, { path: PATH, headers: auth });
      assert.equal(again.status, 200, again.body);
      assert.equal(watch.last().dispatched, 0, 'not forwarded within the request event');
      assert.ok(watch.last().promises > 0);
    } finally {
      watch.stop();
    }
  });
});
