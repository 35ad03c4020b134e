import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertEnvelope, rawExchange, request } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';

/**
 * Hostile request targets. Each is refused with its exact status and reason, before
 * authentication where the path itself is the problem, and nothing reaches the emulator.
 */
describe('paths', () => {
  let stack: Stack;
  let auth: Record<string, string>;
  before(async () => {
    stack = await startStack();
    auth = { authorization: `Bearer ${await stack.callerToken('alice')}` };
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  const nothingReachedCoze = () => assertNothingReachedCoze(stack);

  const badPaths: Record<string, string> = {
    'dot-dot': '/v1/bots/../../api/permission/oauth2/token',
    'dot-dot at the end': '/v1/bots/..',
    'single dot segment': '/v1/./bots/b',
    'encoded dot-dot (lower)': '/v1/bots/%2e%2e/%2e%2e/v1/users/me',
    'encoded dot-dot (upper)': '/v1/bots/%2E%2E/x',
    'mixed encoded dot': '/v1/bots/.%2e/x',
    'encoded slash': '/v1/bots/b%2fx',
    'encoded slash (upper)': '/v1/bots%2Fb',
    'encoded backslash': '/v1/bots/%5c..%5cusers',
    'raw backslash': '/v1/bots/..\\users',
    'double-encoded dot': '/v1/bots/%252e%252e/x',
    'double-encoded slash': '/v1/bots/b%252fx',
    'encoded NUL': '/v1/bots/b%00',
    'encoded control character': '/v1/bots/b%0d%0aX-Injected:%201',
    'truncated escape': '/v1/bots/b%2',
    'bad escape': '/v1/bots/b%zz',
    'empty segment (//)': '/v1//bots/b',
    'leading //': '//v1/bots/b',
    'trailing slash makes an empty segment': '/v1/bots/b/',
    'trailing dot': '/v1/bots/b.',
    'trailing dots': '/v1/bots/b...',
    'trailing dot on a middle segment': '/v1/bots./b',
    'matrix parameter': '/v1/bots/b;jsessionid=x',
    'matrix parameter on a middle segment': '/v1;x=1/bots/b',
    'over-long path': `/v1/bots/${'a'.repeat(2100)}`,
    'raw non-ASCII': '/v1/bots/\u00e9',
  };

  for (const [name, path] of Object.entries(badPaths)) {
    it(`refuses ${name} with 400 bad-path, before authentication`, async () => {
      // No credential: the path is refused first, so the answer is the same for anyone.
      const res = await rawExchange(stack.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.equal(res.status, 400, `${name}: ${res.raw.slice(0, 200)}`);
      assert.ok(['bad-path', 'bad-request'].includes(String(res.headers['x-gateway-error'])), String(res.headers['x-gateway-error']));
      nothingReachedCoze();
    });
  }

  it('refuses raw control characters in the query string', async () => {
    const res = await rawExchange(stack.url, `GET /v1/bots/b?x=\x7f HTTP/1.1\r\nHost: x\r\n${`Authorization: ${auth.authorization}`}\r\nConnection: close\r\n\r\n`);
    assert.equal(res.status, 400);
    nothingReachedCoze();
  });

  const forbidden: Array<[string, string]> = [
    ['POST', '/api/permission/oauth2/token'],
    ['POST', '/api/permission/oauth2/account/123/token'],
    ['GET', '/api/permission/oauth2/authorize'],
    ['POST', '/v1/bot/create'],
    ['POST', '/v1/bot/update'],
    ['POST', '/v1/bot/publish'],
    ['POST', '/v1/bots/b/unpublish'],
    ['GET', '/v1/bots'],
    ['GET', '/v1/space/published_bots_list'],
    ['GET', '/v1/bots/b/versions'],
    ['POST', '/v1/bots/b/collaborators'],
    ['GET', '/v1/apps'],
    ['GET', '/v1/workflows'],
    ['GET', '/v1/workflows/w1'],
    ['GET', '/v1/workspaces'],
    ['POST', '/v1/workspaces'],
    ['GET', '/v1/workspaces/ws/members'],
    ['GET', '/v1/folders'],
    ['GET', '/v1/datasets'],
    ['DELETE', '/v1/datasets/d1'],
    ['POST', '/open_api/knowledge/document/create'],
    ['GET', '/v1/stores/plugins'],
    ['POST', '/v1/plugins/p1/tools/call'],
    ['GET', '/v1/enterprises/e1/members'],
    ['GET', '/v1/organizations/o1/members'],
    ['GET', '/v1/commerce/benefit/limitations'],
    ['GET', '/v1/api_apps'],
    ['POST', '/v1/connectors/c1/install'],
    ['POST', '/v1/entities/copy_tasks'],
    ['POST', '/v1/templates/t1/duplicate'],
    ['POST', '/v1/audio/voices/clone'],
    ['GET', '/v1/audio/voiceprint_groups'],
    ['GET', '/v1/users/me'],
    // Case tricks: routes match exactly, so these are simply not end-user routes.
    ['GET', '/V1/bots/b'],
    ['GET', '/v1/BOTS/b'],
    ['POST', '/V3/chat'],
    ['GET', '/API/permission/oauth2/token'],
    // A known path with a method it does not take.
    ['DELETE', '/v1/bots/b'],
    ['POST', '/v1/files/retrieve'],
  ];
  for (const [method, path] of forbidden) {
    it(`answers ${method} ${path} with 403 route-forbidden, never forwarded`, async () => {
      const res = await request(stack.url, { method, path, headers: auth });
      assertEnvelope(res, 403, 'route-forbidden');
      nothingReachedCoze();
    });
  }

  it('still forwards the plain end-user path (the control case)', async () => {
    const res = await request(stack.url, { path: '/v1/bots/b', headers: auth });
    assert.equal(res.status, 200, res.body);
    assert.equal(stack.emulator.requests.at(-1)?.path, '/v1/bots/b');
  });
});
