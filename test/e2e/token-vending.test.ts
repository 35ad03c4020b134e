import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { startStack, type Stack } from '../helpers/stack.js';

describe('token vending (POST /gateway/token)', () => {
  let stack: Stack;
  let alice: string;
  let bob: string;

  before(async () => {
    stack = await startStack({ env: { TOKEN_VENDING_ENABLED: 'true', CORS_ALLOWED_ORIGINS: 'https://app.example' } });
    alice = await stack.callerToken('alice');
    bob = await stack.callerToken('bob');
  });
  after(() => stack.close());

  it("returns the caller's own session token, never another's", async () => {
    const a = await request(stack.url).post('/gateway/token').set('authorization', `Bearer ${alice}`).expect(200);
    const b = await request(stack.url).post('/gateway/token').set('authorization', `Bearer ${bob}`).send({ session_name: 'alice' }).expect(200);
    assert.equal(a.headers['cache-control'], 'no-store');
    assert.equal(a.body.token_type, 'Bearer');
    assert.equal(a.body.session_name, 'alice');
    assert.equal(b.body.session_name, 'bob', 'a session name sent by the client is ignored');
    assert.notEqual(a.body.access_token, b.body.access_token);
    assert.equal(stack.emulator.sessionForToken(a.body.access_token), 'alice');
    assert.equal(stack.emulator.sessionForToken(b.body.access_token), 'bob');
    assert.ok(a.body.expires_in > Date.now() / 1000, 'expires_in is absolute, as Coze sends it');
  });

  it('returns the cached token on repeated calls, and mints anew when old_token is the cached one', async () => {
    const first = await request(stack.url).post('/gateway/token').set('authorization', `Bearer ${alice}`).expect(200);
    const again = await request(stack.url).post('/gateway/token').set('authorization', `Bearer ${alice}`).send({}).expect(200);
    assert.equal(again.body.access_token, first.body.access_token);
    const exchanges = stack.emulator.stats.exchanges;

    const stranger = await request(stack.url).post('/gateway/token').set('authorization', `Bearer ${alice}`).send({ old_token: 'czs_not_the_cached_one' }).expect(200);
    assert.equal(stranger.body.access_token, first.body.access_token, 'an old_token that is not the cached one changes nothing');
    assert.equal(stack.emulator.stats.exchanges, exchanges);

    const renewed = await request(stack.url).post('/gateway/token').set('authorization', `Bearer ${alice}`).send({ old_token: first.body.access_token }).expect(200);
    assert.notEqual(renewed.body.access_token, first.body.access_token);
    assert.equal(stack.emulator.stats.exchanges, exchanges + 1);
  });

  it('authenticates like any request and answers CORS for listed origins only', async () => {
    const res = await request(stack.url).post('/gateway/token').expect(401);
    assert.equal(res.headers['x-gateway-error'], 'credential-missing');
    const preflight = await request(stack.url).options('/gateway/token').set('origin', 'https://app.example').set('access-control-request-method', 'POST').set('access-control-request-headers', 'authorization, content-type').expect(204);
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(preflight.headers['access-control-allow-headers'], 'authorization, content-type');
    await request(stack.url).options('/gateway/token').set('origin', 'https://evil.example').set('access-control-request-method', 'POST').expect(403);
    const withOrigin = await request(stack.url).post('/gateway/token').set('origin', 'https://app.example').set('authorization', `Bearer ${alice}`).expect(200);
    assert.equal(withOrigin.headers['access-control-allow-origin'], 'https://app.example');
  });
});

describe('token vending disabled', () => {
  it('answers 404', async () => {
    const stack = await startStack();
    try {
      const res = await request(stack.url).post('/gateway/token').set('authorization', `Bearer ${await stack.callerToken('alice')}`).expect(404);
      assert.equal(res.headers['x-gateway-error'], 'not-found');
      assert.equal(stack.emulator.stats.exchanges, 0);
    } finally {
      await stack.close();
    }
  });
});
