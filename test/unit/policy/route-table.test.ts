import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ENDPOINTS, VENDING_ENDPOINT, type Endpoint } from '../../../src/policy/endpoints.js';
import { checkEndpoints, createRouteTable, patternsOverlap, selectEndpoints } from '../../../src/policy/route-table.js';

const OPTIONS = { enforceUserId: true, allowDrafts: false, botInfo: 'display' as const };
const chat = ENDPOINTS.find((e) => e.name === 'chat') as Endpoint;

describe('route table: the match returns the entry, the table is checked, config narrows it', () => {
  it('the built-in table is sound', () => {
    assert.deepEqual(checkEndpoints(ENDPOINTS), []);
    assert.deepEqual(checkEndpoints([VENDING_ENDPOINT]), []);
  });

  it('the match returns the endpoint entry with its rules and path parameters', () => {
    const table = createRouteTable(ENDPOINTS, OPTIONS);
    const match = table.match('GET', '/v1/workflows/w1/run_histories/e1');
    assert.equal(match?.endpoint.name, 'workflow.run_history');
    assert.deepEqual(match?.params, { workflow_id: 'w1', execute_id: 'e1' });
    assert.equal(table.match('POST', '/v3/chat')?.endpoint.rules.rewriteBody !== null, true);
    assert.equal(table.match('GET', '/v1/chat')?.endpoint.transport, 'websocket');
    assert.equal(table.match('HEAD', '/v1/conversations'), undefined);
    assert.equal(table.match('GET', '/V1/conversations'), undefined);
    assert.equal(table.match('GET', '/v1/bots/a.b'), undefined, 'a parameter is one segment of [A-Za-z0-9_-]');
  });

  it('absent is an error: every problem of a bad table is named', () => {
    const bad: Endpoint[] = [
      { name: 'ws.x', method: 'GET', path: '/v1/x', transport: 'websocket', body: { kind: 'none' }, query: {}, summary: '' },
      { name: 'y', method: 'POST', path: '/v1/y', transport: 'http', framing: 'chat', body: { kind: 'stream' }, query: {}, summary: '' },
      { name: 'z', method: 'GET', path: '/v1/z', transport: 'http', body: { kind: 'stream' }, query: {}, summary: '' },
      { name: 'z', method: 'GET', path: '/v1/zz', transport: 'http', body: { kind: 'none' }, query: {}, summary: '' },
      { name: 'dup', method: 'POST', path: '/v3/chat', transport: 'http', body: { kind: 'none' }, query: {}, summary: '' },
      { name: 'dup2', method: 'POST', path: '/v3/chat', transport: 'http', body: { kind: 'none' }, query: {}, summary: '' },
      { name: 'tok', method: 'POST', path: '/api/permission/oauth2/token', transport: 'http', body: { kind: 'none' }, query: {}, summary: '' },
    ];
    const problems = checkEndpoints(bad);
    assert.match(problems.join('\n'), /ws\.x .*must declare its events/);
    assert.match(problems.join('\n'), /y .*framing is for sse endpoints only/);
    assert.match(problems.join('\n'), /z \(GET \/v1\/z\): a GET takes no body/);
    assert.match(problems.join('\n'), /the name z already labels \/v1\/z/);
    assert.match(problems.join('\n'), /POST \/v3\/chat is already the endpoint dup/);
    assert.match(problems.join('\n'), /\/api\/permission\/\* is never proxied/);
    assert.throws(() => createRouteTable(bad, OPTIONS), TypeError);
  });

  it('patterns overlap when one concrete path matches both', () => {
    assert.equal(patternsOverlap('/v3/chat', '/v3/:x'), true);
    assert.equal(patternsOverlap('/v1/bots/:bot_id', '/v1/bots/:id'), true);
    assert.equal(patternsOverlap('/v1/bots/:bot_id', '/v1/bot/get_online_info'), false);
    assert.equal(patternsOverlap('/v1/workflows/:a', '/v1/workflows/:a/run_histories/:b'), false);
    assert.equal(patternsOverlap('/v1/x.y', '/v1/:p'), false, 'a parameter never matches a dot');
  });

  it('config narrows the table: names, renamed built-ins keep their policy, passthrough routes are explicit', () => {
    const all = selectEndpoints(undefined);
    assert.deepEqual(all.problems, []);
    assert.equal(all.endpoints.length, ENDPOINTS.length);

    const narrowed = selectEndpoints(['chat.retrieve', { name: 'my-chat', method: 'POST', path: '/v3/chat' }, { name: 'wf.info', method: 'GET', path: '/v1/workflows/:workflow_id', passthrough: true }]);
    assert.deepEqual(narrowed.problems, []);
    assert.deepEqual(narrowed.endpoints.map((e) => `${e.name} ${e.method} ${e.path}`), ['chat.retrieve GET /v3/chat/retrieve', 'chat.retrieve POST /v3/chat/retrieve', 'my-chat POST /v3/chat', 'wf.info GET /v1/workflows/:workflow_id']);
    const myChat = narrowed.endpoints[2] as Endpoint;
    assert.deepEqual({ ...myChat, name: 'chat' }, chat, 'every rule of the built-in endpoint, only the label differs');
    assert.equal(narrowed.endpoints[3]?.passthrough, true);
    assert.equal(narrowed.endpoints[3]?.body.kind, 'none');

    const disabled = selectEndpoints(undefined, ['bot.retrieve', 'bot.online_info']);
    assert.equal(disabled.endpoints.length, ENDPOINTS.length - 2);
    assert.ok(!disabled.endpoints.some((e) => e.name.startsWith('bot.')));
    assert.deepEqual(selectEndpoints([{ name: 'label', method: 'GET', path: '/v1/bots/:bot_id' }], ['bot.retrieve']).problems, ['policy.routes and policy.disabledRoutes leave no endpoint exposed']);
  });

  it('refuses what it cannot enforce, naming each entry', () => {
    const { problems } = selectEndpoints([
      'nope',
      { name: 'a', method: 'POST', path: '/v3/chatx' },
      { name: 'b', method: 'POST', path: '/v3/:any', passthrough: true },
      { name: 'c', method: 'GET', path: '/v1/conversations', passthrough: true },
      { name: 'd', method: 'POST', path: '/api/permission/oauth2/token', passthrough: true },
    ], ['gone']);
    assert.equal(problems.length, 6, problems.join('\n'));
    assert.match(problems[0] as string, /^policy\.routes\[0\]: "nope" is not a built-in endpoint/);
    assert.match(problems[1] as string, /^policy\.routes\[1\]: the gateway knows no policy for POST \/v3\/chatx/);
    assert.match(problems[2] as string, /^policy\.routes\[2\]: .*overlaps the built-in endpoint chat/);
    assert.match(problems[3] as string, /^policy\.routes\[3\]: .*is the built-in endpoint conversation\.list; its policy cannot be switched off/);
    assert.match(problems[4] as string, /^policy\.routes\[4\]: \/api\/permission/);
    assert.match(problems[5] as string, /^policy\.disabledRoutes: "gone"/);
  });
});
