import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { generateKeyPair, SignJWT } from 'jose';
import { assertEnvelope, collectResponse, request, type RawResponse } from '../helpers/http.js';
import { CALLER_AUDIENCE, CALLER_ISSUER, startStack, type Stack } from '../helpers/stack.js';

describe('proxying', () => {
  let stack: Stack;
  let token: string;
  const auth = () => ({ authorization: `Bearer ${token}` });

  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: 'bot-ok', ALLOWED_WORKFLOW_IDS: 'wf-ok' } });
    token = await stack.callerToken('alice');
  });
  after(() => stack.close());
  beforeEach(() => {
    stack.emulator.reset();
    stack.emulator.unpace();
    stack.emulator.setApiFault(undefined);
  });

  it('delivers SSE event 1 to the client before Coze is allowed to send event 2 (no buffering)', async () => {
    const pacer = stack.emulator.pace();
    const firstChunk = await new Promise<{ text: string; res: http.IncomingMessage }>((resolve, reject) => {
      const req = http.request(`${stack.url}/v3/chat`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' } }, (res) => {
        res.once('data', (c: Buffer) => resolve({ text: c.toString('utf8'), res }));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ bot_id: 'bot-ok', user_id: 'x', stream: true, additional_messages: [{ role: 'user', content: 'hi', content_type: 'text' }] }));
      pacer.release(1);
    });
    assert.equal(firstChunk.res.headers['content-type']?.startsWith('text/event-stream'), true);
    assert.ok(firstChunk.text.startsWith('event:conversation.chat.created\ndata:'), firstChunk.text);
    assert.equal(pacer.sent, 1, 'the client holds event 1 while event 2 has not been released');

    const rest: Buffer[] = [];
    const ended = new Promise<void>((resolve) => {
      firstChunk.res.on('data', (c: Buffer) => rest.push(c));
      firstChunk.res.on('end', () => resolve());
    });
    pacer.release(1000);
    await ended;
    const whole = firstChunk.text + Buffer.concat(rest).toString('utf8');
    assert.ok(whole.endsWith('event:done\ndata:"[DONE]"\n\n'), 'framing passes byte for byte');
    assert.ok(!whole.includes('event: '), 'no re-framing (Coze chat framing has no space)');
  });

  it('relays workflow SSE framing (id lines, spaces) byte for byte', async () => {
    const res = await request(stack.url, {
      method: 'POST',
      path: '/v1/workflow/stream_run',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ workflow_id: 'wf-ok', parameters: {}, ext: { user_id: 'mallory' } }),
    });
    assert.equal(res.status, 200);
    assert.match(res.body, /^id: 0\nevent: Message\ndata: /);
    assert.match(res.body, /id: \d+\nevent: Done\ndata: \{\}\n\n$/);
    const seen = stack.emulator.requests.find((r) => r.path === '/v1/workflow/stream_run');
    assert.deepEqual((seen?.body as { ext: { user_id: string } }).ext, { user_id: 'alice' }, 'ext.user_id forced');
  });

  it('retries once with a fresh token when Coze revokes the cached one mid-life', async () => {
    const first = await request(stack.url, { path: '/v1/conversations?bot_id=bot-ok', headers: auth() });
    assert.equal(first.status, 200);
    const exchangesBefore = stack.emulator.stats.exchanges;
    const oldToken = stack.gateway.tokens.peek('alice');
    assert.ok(oldToken);
    stack.emulator.revokeToken(oldToken.accessToken);

    const res = await request(stack.url, { path: '/v1/conversations?bot_id=bot-ok', headers: auth() });
    assert.equal(res.status, 200);
    assert.equal(res.json().code, 0, 'the client sees success');
    assert.equal(stack.emulator.stats.exchanges, exchangesBefore + 1, 'exactly one re-mint');
    const attempts = stack.emulator.requests.filter((r) => r.path === '/v1/conversations');
    assert.equal(attempts.length, 3, 'the first call, the rejected call, and exactly one retry');
    assert.equal(attempts[1]?.sessionName, undefined, 'the revoked token was refused');
    assert.equal(attempts[2]?.sessionName, 'alice');
    assert.notEqual(stack.gateway.tokens.peek('alice')?.accessToken, oldToken.accessToken);
  });

  it('passes a 4100 through when the body cannot be replayed, and drops the token', async () => {
    await request(stack.url, { path: '/v1/conversations?bot_id=bot-ok', headers: auth() });
    const old = stack.gateway.tokens.peek('alice');
    assert.ok(old);
    stack.emulator.revokeToken(old.accessToken);
    const boundary = 'XBOUNDARY';
    const body = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--${boundary}--\r\n`;
    const res = await request(stack.url, { method: 'POST', path: '/v1/files/upload', headers: { ...auth(), 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
    assert.equal(res.status, 200);
    assert.equal(res.json().code, 4100);
    assert.equal(res.headers['x-gateway-error'], undefined, "Coze's own error, not ours");
    assert.equal(stack.gateway.tokens.peek('alice'), undefined, 'the revoked token left the cache');
  });

  it('swaps credentials: Authorization, cookies, hop-by-hop and X-Forwarded-* never reach Coze, even with Expect: 100-continue', async () => {
    const res = await request(stack.url, {
      method: 'POST',
      path: '/v1/conversation/create',
      headers: {
        ...auth(),
        cookie: 'session=SECRET-COOKIE',
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-host': 'evil.example',
        forwarded: 'for=6.6.6.6',
        connection: 'keep-alive, x-secret-hop',
        'x-secret-hop': 'HOP-SECRET',
        expect: '100-continue',
        'content-type': 'application/json',
      },
      body: JSON.stringify({ bot_id: 'bot-ok' }),
    });
    assert.equal(res.status, 200, res.body);
    assert.ok(res.headers['x-tt-logid'], 'X-Tt-Logid is kept');
    assert.ok(res.headers['x-request-id']);
    const seen = stack.emulator.requests.at(-1);
    assert.ok(seen);
    assert.match(String(seen.headers.authorization), /^Bearer czs_/);
    for (const name of ['cookie', 'x-forwarded-for', 'x-forwarded-host', 'forwarded', 'x-secret-hop', 'expect']) {
      assert.equal(seen.headers[name], undefined, `${name} was not forwarded`);
    }
    assert.equal(seen.headers['x-request-id'], res.headers['x-request-id']);
    assert.ok(!JSON.stringify(seen.headers).includes(token));
  });

  it('removes Set-Cookie from Coze answers', async () => {
    const res = await request(stack.url, { path: '/v1/bots/bot-ok', headers: auth() });
    assert.equal(res.status, 200);
    assert.equal(res.headers['set-cookie'], undefined);
  });

  it('forces user_id and connector_uid, and refuses disallowed bots, workflows and routes with 403', async () => {
    const chat = await request(stack.url, {
      method: 'POST',
      path: '/v3/chat',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ bot_id: 'bot-ok', user_id: 'bob', stream: false, auto_save_history: true, additional_messages: [{ role: 'user', content: 'x', content_type: 'text' }] }),
    });
    assert.equal(chat.status, 200);
    assert.equal((stack.emulator.requests.at(-1)?.body as { user_id: string }).user_id, 'alice');

    await request(stack.url, { path: '/v1/variables?bot_id=bot-ok&connector_uid=bob', headers: auth() });
    assert.equal(stack.emulator.requests.at(-1)?.query.connector_uid, 'alice');

    stack.emulator.reset();
    const cases: Array<[string, string, string | undefined, string]> = [
      ['POST', '/v3/chat', JSON.stringify({ bot_id: 'bot-evil', user_id: 'a', additional_messages: [] }), 'bot-forbidden'],
      ['GET', '/v1/conversations?bot_id=bot-evil', undefined, 'bot-forbidden'],
      ['GET', '/v1/bots/bot-evil', undefined, 'bot-forbidden'],
      ['POST', '/v1/workflow/run', JSON.stringify({ workflow_id: 'wf-evil' }), 'workflow-forbidden'],
      ['POST', '/v1/bot/create', JSON.stringify({}), 'route-forbidden'],
      ['GET', '/v1/users/me', undefined, 'route-forbidden'],
      ['POST', '/api/permission/oauth2/token', JSON.stringify({}), 'route-forbidden'],
    ];
    for (const [method, path, body, reason] of cases) {
      const res = await request(stack.url, { method, path, headers: { ...auth(), 'content-type': 'application/json' }, ...(body ? { body } : {}) });
      assertEnvelope(res, 403, reason);
    }
    assert.equal(stack.emulator.requests.length, 0, 'none reached Coze');
    assert.equal(stack.emulator.tokenRequests, 0);
  });

  it('answers 400 to a body it must read but cannot parse', async () => {
    const res = await request(stack.url, { method: 'POST', path: '/v3/chat', headers: { ...auth(), 'content-type': 'application/json' }, body: '{"bot_id":' });
    assertEnvelope(res, 400, 'bad-json-body');
    assert.equal(stack.emulator.requests.length, 0);
  });

  it('refuses traversal and encoded-separator paths before authentication', async () => {
    for (const path of ['/v1/../v1/users/me', '/v1/%2e%2e/users/me', '/v1/conversations%2fx', '/v1/x%5cy', '/v1//conversations', '/v1/conversations/a;b']) {
      const res = await request(stack.url, { path, headers: auth() });
      assert.equal(res.status, 400, path);
      assert.equal(res.headers['x-gateway-error'], 'bad-path');
    }
    assert.equal(stack.emulator.requests.length, 0);
  });

  it('streams uploads: Coze receives the first bytes before the client has sent the rest', async () => {
    const boundary = 'STREAMBOUNDARY';
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`);
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const total = head.length + 10 * chunk.length + tail.length;
    const heapBefore = process.memoryUsage().heapUsed;

    const response = new Promise<RawResponse>((resolve, reject) => {
      const req = http.request(`${stack.url}/v1/files/upload`, {
        method: 'POST',
        headers: { ...auth(), 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(total) },
      }, (res) => {
        collectResponse(res).then(resolve, reject);
      });
      req.on('error', reject);
      void (async () => {
        req.write(head);
        req.write(chunk);
        // Deterministic: wait until Coze (the emulator) has seen upload bytes, with 9 MB still unsent.
        while (stack.emulator.uploadBytesReceived === 0) await new Promise((r) => setTimeout(r, 5));
        for (let i = 1; i < 10; i++) req.write(chunk);
        req.end(tail);
      })();
    });
    const res = await response;
    assert.equal(res.status, 200, res.body);
    const data = (res.json() as unknown as { data: { bytes: number } }).data;
    assert.equal(data.bytes, 10 * chunk.length);
    const growth = process.memoryUsage().heapUsed - heapBefore;
    assert.ok(growth < 8 * 1024 * 1024, `heap grew by ${growth} bytes for a 10 MB upload`);
  });

  it('answers 413 to a body over server.maxBodyBytes, declared or streamed', async () => {
    const declared = await request(stack.url, {
      method: 'POST',
      path: '/v1/files/upload',
      headers: { ...auth(), 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(21 * 1024 * 1024) },
    }).catch(() => undefined);
    // The gateway answers before reading the body; the client may see the answer or a reset.
    if (declared) assertEnvelope(declared, 413, 'body-too-large');

    const big = Buffer.alloc(21 * 1024 * 1024, 1);
    const chunked = await new Promise<RawResponse | undefined>((resolve) => {
      const req = http.request(`${stack.url}/v1/files/upload`, { method: 'POST', headers: { ...auth(), 'content-type': 'multipart/form-data; boundary=x', 'transfer-encoding': 'chunked' } }, (res) => {
        collectResponse(res).then(resolve, () => resolve(undefined));
      });
      req.on('error', () => resolve(undefined));
      req.end(big);
    });
    if (chunked) assertEnvelope(chunked, 413, 'body-too-large');
    assert.ok(declared || chunked, 'at least one 413 was read by the client');
  });

  it('aborts the upstream stream when the client goes away', async () => {
    const pacer = stack.emulator.pace();
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${stack.url}/v3/chat`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.end(JSON.stringify({ bot_id: 'bot-ok', user_id: 'x', stream: true, additional_messages: [{ role: 'user', content: 'hi', content_type: 'text' }] }));
      pacer.release(1);
      setTimeout(() => reject(new Error('no first event')), 5000).unref();
    });
    for (let i = 0; i < 200 && stack.emulator.openStreams > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(stack.emulator.openStreams, 0, 'the upstream stream was closed');
    for (let i = 0; i < 200 && stack.gateway.streams.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(stack.gateway.streams.size, 0);
  });

  it('maps an upstream that is down to 502 and a hung one to 504', async () => {
    stack.emulator.setApiFault({ kind: 'reset' });
    const reset = await request(stack.url, { path: '/v1/bots/bot-ok', headers: auth() });
    assertEnvelope(reset, 502, 'upstream-unavailable');
    stack.emulator.setApiFault({ kind: 'status', status: 503, times: 1 });
    const passthrough = await request(stack.url, { path: '/v1/bots/bot-ok', headers: auth() });
    assert.equal(passthrough.status, 503, "Coze's own 5xx passes through");
    assert.equal(passthrough.headers['x-gateway-error'], undefined);
  });
});

describe('bad callers get clear errors and never reach Coze', () => {
  let stack: Stack;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'csg-keys-'));
    const keysFile = join(dir, 'api-keys.yaml');
    writeFileSync(keysFile, `- subject: svc-reporting\n  sha256: ${createHash('sha256').update('good-api-key-0123456789').digest('hex')}\n`);
    stack = await startStack({
      env: { IDENTITY_API_KEYS_FILE: keysFile, IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', IDENTITY_TRUSTED_HEADER_ALLOW_FROM: '10.0.0.0/8', SESSION_SHARED_NAMESPACE: 'true' },
    });
  });
  after(() => stack.close());

  it('401s every broken JWT', async () => {
    const other = await generateKeyPair('RS256');
    const now = Math.floor(Date.now() / 1000);
    const signed = (builder: SignJWT, key = stack.callerKey) => builder.setProtectedHeader({ alg: 'RS256' }).sign(key);
    const base = () => new SignJWT({}).setSubject('alice').setIssuer(CALLER_ISSUER).setAudience(CALLER_AUDIENCE).setIssuedAt();
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const cases: Record<string, string> = {
      expired: await signed(base().setExpirationTime(now - 3600)),
      'wrong issuer': await signed(base().setIssuer('https://other.example').setExpirationTime('1h')),
      'wrong audience': await signed(base().setAudience('someone-else').setExpirationTime('1h')),
      'bad signature': await signed(base().setExpirationTime('1h'), other.privateKey),
      'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice', iss: CALLER_ISSUER, aud: CALLER_AUDIENCE, exp: now + 3600 })}.`,
      'no exp': await signed(base()),
    };
    for (const [name, jwt] of Object.entries(cases)) {
      const res = await request(stack.url, { path: '/v1/bots/b', headers: { authorization: `Bearer ${jwt}` } });
      assertEnvelope(res, 401, 'credential-invalid');
      assert.ok(res.headers['www-authenticate'], name);
      assert.ok(!res.body.includes(jwt), `${name}: the token is not echoed`);
    }
    assertEnvelope(await request(stack.url, { path: '/v1/bots/b' }), 401, 'credential-missing');
    assert.equal(stack.emulator.requests.length + stack.emulator.tokenRequests, 0);
  });

  it('accepts a known API key and 401s an unknown one', async () => {
    const ok = await request(stack.url, { path: '/v1/bots/b', headers: { 'x-api-key': 'good-api-key-0123456789' } });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, 'svc-reporting');
    stack.emulator.reset();
    assertEnvelope(await request(stack.url, { path: '/v1/bots/b', headers: { 'x-api-key': 'wrong-key' } }), 401, 'credential-invalid');
    assertEnvelope(await request(stack.url, { path: '/v1/bots/b', headers: { authorization: 'Bearer wrong-key' } }), 401, 'credential-invalid');
    assert.equal(stack.emulator.requests.length, 0);
  });

  it('401s the trusted header from an address outside allowFrom', async () => {
    const res = await request(stack.url, { path: '/v1/bots/b', headers: { 'x-forwarded-user': 'alice' } });
    assertEnvelope(res, 401, 'untrusted-identity-header');
    assert.equal(stack.emulator.requests.length, 0);
    assert.ok(stack.logs.some((l) => l.includes('"status":401')));
  });
});
