import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { assertEnvelope, request } from '../helpers/http.js';
import { startStack, type Stack } from '../helpers/stack.js';

/**
 * The token endpoint misbehaving while users keep calling. Each case: a clear 502/504, a bounded
 * number of exchanges (retries within coze.mintDeadlineSeconds, then the breaker hold), and
 * recovery once the endpoint is back.
 */
describe('token endpoint faults', () => {
  let stack: Stack | undefined;
  afterEach(() => stack?.close());

  async function setUp(): Promise<Stack> {
    stack = await startStack({ flags: { 'coze.mintDeadlineSeconds': '2' } });
    return stack;
  }
  const as = async (s: Stack, user: string) => ({ authorization: `Bearer ${await s.callerToken(user)}` });
  const call = async (s: Stack, user: string) => request(s.url, { path: '/v1/bots/b', headers: await as(s, user) });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('down (connections reset): 502 after bounded retries, later users held without new exchanges, recovery', async () => {
    const s = await setUp();
    s.emulator.setTokenFault({ kind: 'reset' });
    const first = await call(s, 'u0');
    assertEnvelope(first, 502, 'token-mint-failed');
    const afterFirst = s.emulator.tokenRequests;
    assert.ok(afterFirst >= 2 && afterFirst <= 8, `retried within the deadline: ${afterFirst} attempts`);

    const started = Date.now();
    for (let i = 1; i <= 20; i++) assertEnvelope(await call(s, `u${i}`), 502, 'token-mint-failed');
    assert.equal(s.emulator.tokenRequests, afterFirst, '20 more users during the hold cost no exchange');
    assert.ok(Date.now() - started < 1000, 'held requests fail fast');

    s.emulator.setTokenFault(undefined);
    await sleep(1100);
    const recovered = await call(s, 'u0');
    assert.equal(recovered.status, 200, recovered.body);
    assert.equal((await call(s, 'u1')).status, 200, 'the breaker closed after the first success');
  });

  it('slow (answers after the deadline): 504 token-mint-timeout at coze.mintDeadlineSeconds', async () => {
    const s = await setUp();
    s.emulator.setTokenFault({ kind: 'delay', ms: 3500 });
    const started = Date.now();
    assertEnvelope(await call(s, 'slow'), 504, 'token-mint-timeout');
    const took = Date.now() - started;
    assert.ok(took >= 1900 && took < 3400, `answered after ${took} ms`);
    assert.equal(s.emulator.tokenRequests, 1, 'a timeout is not retried: the attempt had the whole deadline');
  });

  it('hangs (never answers): 504, and the request is not left open', async () => {
    const s = await setUp();
    s.emulator.setTokenFault({ kind: 'hang' });
    assertEnvelope(await call(s, 'hang'), 504, 'token-mint-timeout');
  });

  it('5xx then healthy: retried with backoff inside the deadline, the user never sees the failure', async () => {
    const s = await setUp();
    s.emulator.setTokenFault({ kind: 'status', status: 502, times: 2 });
    const res = await call(s, 'retry');
    assert.equal(res.status, 200, res.body);
    assert.equal(s.emulator.tokenRequests, 3);
    assert.equal(s.emulator.stats.exchanges, 1);
  });

  it('5xx for good: 502 within the deadline with a bounded number of attempts', async () => {
    const s = await setUp();
    s.emulator.setTokenFault({ kind: 'status', status: 503 });
    const started = Date.now();
    assertEnvelope(await call(s, 'down'), 502, 'token-mint-failed');
    assert.ok(Date.now() - started < 2600);
    assert.ok(s.emulator.tokenRequests <= 8, `${s.emulator.tokenRequests} attempts`);
  });

  it('invalid_client: 502 naming it, never retried, no hammering, recovery once fixed', async () => {
    const s = await setUp();
    s.emulator.setTokenFault({ kind: 'error-code', errorCode: 'invalid_client' });
    const res = await call(s, 'a');
    assertEnvelope(res, 502, 'token-mint-failed');
    assert.match(res.json().msg, /invalid_client/);
    assert.equal(s.emulator.tokenRequests, 1);
    const burst = await Promise.all(Array.from({ length: 50 }, (_, i) => call(s, `burst-${i}`)));
    for (const r of burst) assertEnvelope(r, 502, 'token-mint-failed');
    assert.equal(s.emulator.tokenRequests, 1, '50 users during the hold: no new exchange');
    s.emulator.setTokenFault(undefined);
    await sleep(1100);
    assert.equal((await call(s, 'a')).status, 200);
  });

  it('cached sessions keep working through a token endpoint outage', async () => {
    const s = await setUp();
    assert.equal((await call(s, 'cached')).status, 200);
    s.emulator.setTokenFault({ kind: 'reset' });
    for (let i = 0; i < 5; i++) assert.equal((await call(s, 'cached')).status, 200);
    assert.equal(s.emulator.tokenRequests, 1);
  });
});
