import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { randomBytes } from 'node:crypto';
import { REPORTED_REMINT_INTERVAL_MS } from '../../src/vending/token-vending.js';
import { redisMissing, startRedis, type RedisServer } from '../helpers/redis.js';
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

describe('token vending: re-mint floor', () => {
  let floorStack: Stack;
  // Its own stack: the clock moves once, as signing a JWT far ahead of Coze's clock fails.
  let floorAhead = 0;
  before(async () => {
    floorStack = await startStack({ env: { TOKEN_VENDING_ENABLED: 'true' }, gatewayDeps: { now: () => Date.now() + floorAhead } });
  });
  after(() => floorStack.close());

  it('vending-remint-floor: a report re-mints once; the new token reported again within 30 s is 429 with Retry-After, an older one gets the current token, and 30 s later a report re-mints again', async () => {
    const carol = await floorStack.callerToken('carol');
    const vend = (old?: string) => request(floorStack.url).post('/gateway/token').set('authorization', `Bearer ${carol}`).send(old === undefined ? {} : { old_token: old });
    const t1 = (await vend().expect(200)).body.access_token as string;
    const exchanges = floorStack.emulator.stats.exchanges;
    const t2 = (await vend(t1).expect(200)).body.access_token as string;
    assert.notEqual(t2, t1);
    assert.equal(floorStack.emulator.stats.exchanges, exchanges + 1, 'the first report re-mints at once');
    for (let i = 0; i < 20; i++) {
      const refused = await vend(t2).expect(429);
      assert.equal(refused.headers['x-gateway-error'], 'rate-limited');
      assert.ok(Number(refused.headers['retry-after']) >= 1 && Number(refused.headers['retry-after']) <= 30, refused.headers['retry-after']);
    }
    assert.equal((await vend(t1).expect(200)).body.access_token, t2, 'a report of a token already replaced gets the current one');
    assert.equal(floorStack.emulator.stats.exchanges, exchanges + 1, 'twenty reports in a row asked Coze for nothing');
    floorAhead += REPORTED_REMINT_INTERVAL_MS;
    const t3 = (await vend(t2).expect(200)).body.access_token as string;
    assert.notEqual(t3, t2);
    assert.equal(floorStack.emulator.stats.exchanges, exchanges + 2);
  });
});

describe('token vending with replicas on Redis', { skip: redisMissing }, () => {
  let redisServer: RedisServer;
  let stack: Stack;
  before(async () => {
    redisServer = await startRedis();
    stack = await startStack({ env: { TOKEN_VENDING_ENABLED: 'true', REDIS_URL: redisServer.url, CACHE_ENCRYPTION_KEY: randomBytes(32).toString('base64') } });
  });
  after(async () => {
    await stack?.close();
    await redisServer?.stop();
  });

  it('vending-report-on-another-replica: a token minted on one replica and reported on another is dropped from Redis and re-minted there, not handed back', async () => {
    const dana = await stack.callerToken('dana');
    const other = await stack.replica();
    const first = (await request(stack.url).post('/gateway/token').set('authorization', `Bearer ${dana}`).expect(200)).body.access_token as string;
    stack.emulator.revokeToken(first);
    const renewed = (await request(other.url).post('/gateway/token').set('authorization', `Bearer ${dana}`).send({ old_token: first }).expect(200)).body.access_token as string;
    assert.notEqual(renewed, first, 'the revoked token is not served back from Redis');
    assert.equal(stack.emulator.sessionForToken(renewed), 'dana');
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
