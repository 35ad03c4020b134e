import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertEnvelope, request } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';
import { refusedUpgrade } from '../helpers/websocket.js';

/**
 * The Chat SDKs' refresh trigger, restated from coze-js packages/chat-sdk/src/libs/utils/
 * mini-coze-api.ts (`isAuthErrorCode(code || response.status)` against ApiAuthError's 401, 4100,
 * 4101 and 700012006; STUDIO's open-chat coze-api-custom.ts has the same rule). The body code
 * wins whenever it is non-zero.
 */
function chatSdkRefreshes(status: number, body: { code?: number }): boolean {
  return [401, 4100, 4101, 700012006].includes(body.code || status);
}

/**
 * Issue 14: the gateway's own 401s carried codes 401001/401002, which the
 * Chat SDKs do not recognise, so an end user whose credential expired was stuck: onRefreshToken
 * never ran. Every caller-credential failure now has code 4100; X-Gateway-Error tells them apart.
 */
describe('credential-failure-code-4100: the gateway 401s trigger the Chat SDKs token refresh', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ env: { IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', IDENTITY_TRUSTED_HEADER_ALLOW_FROM: '10.0.0.0/8', SESSION_SHARED_NAMESPACE: 'true' } });
  });
  after(() => stack.close());

  it('a missing, an expired, a forged credential and an untrusted header are 401 with code 4100 and their own reason', async () => {
    const expired = await stack.callerToken('alice', {}, { expiresIn: Math.floor(Date.now() / 1000) - 3600 });
    const cases: Array<[Record<string, string>, string, RegExp]> = [
      [{}, 'credential-missing', /No credential was sent/],
      [{ authorization: `Bearer ${expired}` }, 'credential-invalid', /rejected by the gateway/],
      [{ authorization: 'Bearer a.b.c' }, 'credential-invalid', /rejected by the gateway/],
      [{ 'x-forwarded-user': 'bob' }, 'untrusted-identity-header', /not allowed to set it/],
    ];
    for (const [headers, reason, message] of cases) {
      const res = await request(stack.url, { path: '/v1/conversations?bot_id=b', headers });
      assertEnvelope(res, 401, reason);
      const body = res.json();
      assert.equal(body.code, 4100, reason);
      assert.match(body.msg, message);
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="coze-session-gateway"');
      assert.ok(chatSdkRefreshes(res.status, body), `${reason}: the Chat SDK calls onRefreshToken`);
    }
    assertNothingReachedCoze(stack);
  });

  it('a refused WebSocket upgrade carries the same code', async () => {
    const res = await refusedUpgrade(`${stack.url.replace('http', 'ws')}/v1/chat?bot_id=b`, { authorization: 'Bearer a.b.c' });
    assert.equal(res.status, 401);
    assert.equal(res.gatewayError, 'credential-invalid');
    assert.equal(JSON.parse(res.body).code, 4100);
  });

  it('other gateway errors keep codes the Chat SDKs do not treat as auth errors', async () => {
    const res = await request(stack.url, { path: '/v1/users/me', headers: { authorization: `Bearer ${await stack.callerToken('alice')}` } });
    assertEnvelope(res, 403, 'route-forbidden');
    assert.equal(chatSdkRefreshes(res.status, res.json()), false);
  });
});
