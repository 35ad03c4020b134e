import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertEnvelope, request } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';
import { refusedUpgrade } from '../helpers/websocket.js';

const BOT = '7000000000000000001';

/**
 * Issue 15, finding 5: `?%61uthorization=Bearer <JWT>` was not recognised as `authorization`
 * (the check ran on the raw query), so the caller's credential reached Coze, and on an upgrade
 * it dodged the duplicate-credential rule. A controlled query name is now read as a decoder
 * reads it: percent-encoded, in another letter case or repeated, it is 400 ambiguous-field.
 */
describe('encoded-query-names: a query name that decodes to a controlled one is refused', () => {
  let stack: Stack;
  let jwt: string;
  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: BOT } });
    jwt = await stack.callerToken('alice');
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  const cases: ReadonlyArray<readonly [string, string]> = [
    ['%61uthorization=Bearer%20JWT', 'an encoded authorization carrying the caller credential'],
    ['AUTHORIZATION=Bearer%20JWT&%41uthorization=Bearer%20JWT', 'an encoded authorization next to an upper-case one'],
    ['user%5Fid=bob', 'user%5Fid'],
    ['%75ser_id=bob', '%75ser_id'],
    ['connector%5Fuid=bob', 'connector%5Fuid'],
    ['bot%5Fid=7999999999999999999', 'bot%5Fid off the allowlist'],
    ['bot_id=' + BOT + '&bot%5Fid=7999999999999999999', 'bot_id and bot%5Fid'],
    ['Bot_Id=7999999999999999999', 'Bot_Id in another letter case'],
    ['bot_id=' + BOT + '&BOT_ID=7999999999999999999', 'bot_id and BOT_ID'],
    ['bot_id=' + BOT + '&bot_id=7999999999999999999', 'bot_id twice'],
    ['app%5Fid=7299999999999999999', 'app%5Fid'],
    ['is%5Fpublished=false', 'is%5Fpublished'],
    ['Is_Published=false', 'Is_Published'],
    ['workflow_id=1&workflow_id=2', 'workflow_id twice'],
  ];

  for (const [query, what] of cases) {
    it(`GET /v1/conversations?${query.replace('JWT', '…')} (${what}) is 400 ambiguous-field`, async () => {
      const res = await request(stack.url, { path: `/v1/conversations?${query.replaceAll('JWT', jwt)}`, headers: { authorization: `Bearer ${jwt}` } });
      assertEnvelope(res, 400, 'ambiguous-field');
      assert.ok(!res.body.includes(jwt), 'the credential is never echoed');
      assertNothingReachedCoze(stack);
    });
  }

  it('on an upgrade an encoded authorization parameter is refused before it could count as a second credential', async () => {
    const url = `${stack.url.replace('http', 'ws')}/v1/chat?bot_id=${BOT}&%61uthorization=${encodeURIComponent(`Bearer ${jwt}`)}`;
    const withHeader = await refusedUpgrade(url, { authorization: `Bearer ${jwt}` });
    assert.equal(withHeader.status, 400);
    assert.equal(withHeader.gatewayError, 'ambiguous-field');
    const alone = await refusedUpgrade(url);
    assert.equal(alone.gatewayError, 'ambiguous-field');
    assertNothingReachedCoze(stack);
  });

  it('the control cases: plain names pass, values may be encoded, and the credential is never forwarded', async () => {
    const ok = await request(stack.url, { path: `/v1/conversations?bot_id=${BOT}&page%5Fsize=5&sort_order=DESC%20x`, headers: { authorization: `Bearer ${jwt}` } });
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(stack.emulator.requests.at(-1)?.query, { bot_id: BOT, page_size: '5', sort_order: 'DESC x' });
    const withCredential = await request(stack.url, { path: `/v1/conversations?bot_id=${BOT}&authorization=${encodeURIComponent(`Bearer ${jwt}`)}`, headers: { authorization: `Bearer ${jwt}` } });
    assert.equal(withCredential.status, 200, withCredential.body);
    assert.deepEqual(stack.emulator.requests.at(-1)?.query, { bot_id: BOT });
    const encodedValue = await request(stack.url, { path: `/v1/conversations?bot_id=%37000000000000000001`, headers: { authorization: `Bearer ${jwt}` } });
    assert.equal(encodedValue.status, 200, 'an encoded value is decoded before the allowlist check');
  });
});
