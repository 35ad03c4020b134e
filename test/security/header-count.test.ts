import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { rawExchange, type RawResponse } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';

const BOT = '7000000000000000001';

/** `count` short header lines (`h0:` ... ), well under the 16 KiB header size limit. */
const padding = (count: number) => Array.from({ length: count }, (_, i) => `h${i}:\r\n`).join('');

/**
 * Issue 15, finding 8: Node keeps only the first 1,000 or so headers of a request and drops the
 * rest unseen, so a second X-Forwarded-User or Authorization after 1,100 padding headers was
 * never seen and the first one won. The gateway now counts every header it is given (the server
 * keeps one more than server.maxHeadersCount) and answers 431 too-many-headers past the limit.
 */
describe('header-count: a duplicate credential cannot hide behind padding headers', () => {
  let stack: Stack;
  let jwt: string;
  let bob: string;
  before(async () => {
    stack = await startStack({ env: { IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', SESSION_SHARED_NAMESPACE: 'true' } });
    jwt = await stack.callerToken('alice');
    bob = await stack.callerToken('bob');
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  const send = (head: string, url = stack.url): Promise<RawResponse & { raw: string }> => rawExchange(url, `GET /v1/conversations?bot_id=${BOT} HTTP/1.1\r\nHost: x\r\n${head}Connection: close\r\n\r\n`);
  const assertTooMany = (res: RawResponse & { raw: string }) => {
    assert.equal(res.status, 431, res.raw.slice(0, 200));
    assert.equal(res.headers['x-gateway-error'], 'too-many-headers');
    assert.match(res.json().msg, /server\.maxHeadersCount/);
    assertNothingReachedCoze(stack);
  };

  it('a second Authorization after 1,100 padding headers is 431, not served as the first', async () => {
    assertTooMany(await send(`Authorization: Bearer ${jwt}\r\n${padding(1100)}Authorization: Bearer ${bob}\r\n`));
  });

  it('a second trusted identity header after 1,100 padding headers is 431', async () => {
    assertTooMany(await send(`X-Forwarded-User: alice\r\n${padding(1100)}X-Forwarded-User: bob\r\n`));
  });

  it('101 headers are 431 by default; 100 pass', async () => {
    // Host, Authorization and Connection are three of them.
    assertTooMany(await send(`Authorization: Bearer ${jwt}\r\n${padding(98)}`));
    const ok = await send(`Authorization: Bearer ${jwt}\r\n${padding(97)}`);
    assert.equal(ok.status, 200, ok.raw.slice(0, 300));
    assert.equal(stack.emulator.requests.at(-1)?.sessionName, 'alice');
  });

  it('on a WebSocket upgrade too', async () => {
    const res = await rawExchange(
      stack.url,
      `GET /v1/chat?bot_id=${BOT} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${jwt}\r\n${padding(1100)}Authorization: Bearer ${bob}\r\n\r\n`,
    );
    assertTooMany(res);
  });

  it('server.maxHeadersCount raises the limit', async () => {
    const roomy = await stack.replica({ MAX_HEADERS_COUNT: '300' });
    const ok = await send(`Authorization: Bearer ${jwt}\r\n${padding(250)}`, roomy.url);
    assert.equal(ok.status, 200, ok.raw.slice(0, 300));
    stack.emulator.reset();
    assertTooMany(await send(`Authorization: Bearer ${jwt}\r\n${padding(300)}`, roomy.url));
    await roomy.close();
  });
});
