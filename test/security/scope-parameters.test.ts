import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { BOT_DISPLAY_FIELDS } from '../../src/policy/endpoints.js';
import { assertEnvelope, request } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';
import { closed, openWebSocket, refusedUpgrade } from '../helpers/websocket.js';

const BOT = '7000000000000000001';
const WORKFLOW = '7100000000000000001';
const APP = '7200000000000000001';
const OTHER_BOT = '7099999999999999999';
const OTHER_WORKFLOW = '7199999999999999999';
const OTHER_APP = '7299999999999999999';

/**
 * Issue 15, finding 10: scope parameters nobody checked. `publish_status: unpublished_draft`,
 * `bot_version`, `workflow_version`, `draft_mode` and `is_published=false` reached drafts;
 * `app_id` (body and query) and the WebSocket `entity_id` bypassed the bot and workflow
 * allowlists; and bot info answers handed every end user the bot's whole configuration.
 */
describe('scope-parameters: drafts, apps, entities and bot info', () => {
  let stack: Stack;
  let headers: Record<string, string>;
  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: BOT, ALLOWED_WORKFLOW_IDS: WORKFLOW, ALLOWED_APP_IDS: APP } });
    headers = { authorization: `Bearer ${await stack.callerToken('alice')}`, 'content-type': 'application/json' };
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  const drafts: ReadonlyArray<readonly [string, string, string | undefined]> = [
    ['POST', '/v3/chat', `{"bot_id":"${BOT}","publish_status":"unpublished_draft","additional_messages":[]}`],
    ['POST', '/v3/chat', `{"bot_id":"${BOT}","publish_status":"published_draft","additional_messages":[]}`],
    ['POST', '/v3/chat', `{"bot_id":"${BOT}","bot_version":"1737125263991","additional_messages":[]}`],
    ['POST', '/v3/chat', `{"bot_id":"${BOT}","bot_version":1737125263991,"additional_messages":[]}`],
    ['POST', '/v1/workflow/run', `{"workflow_id":"${WORKFLOW}","workflow_version":"v0.0.1"}`],
    ['POST', '/v1/workflow/stream_run', `{"workflow_id":"${WORKFLOW}","workflow_version":"v0.0.1"}`],
    ['POST', '/v1/workflows/chat', `{"workflow_id":"${WORKFLOW}","workflow_version":"v0.0.1","additional_messages":[]}`],
    ['POST', '/v1/conversation/create', `{"bot_id":"${BOT}","draft_mode":true}`],
    ['POST', '/v1/conversation/create', `{"app_id":"${APP}","draft_mode":"true"}`],
    ['GET', `/v1/bots/${BOT}?is_published=false`, undefined],
    ['GET', `/v1/bot/get_online_info?bot_id=${BOT}&is_published=0`, undefined],
    ['POST', `/v3/chat?publish_status=unpublished_draft`, `{"bot_id":"${BOT}"}`],
    ['GET', `/v1/conversations?bot_id=${BOT}&draft_mode=true`, undefined],
  ];
  for (const [method, path, body] of drafts) {
    it(`${method} ${path} ${body ?? ''} is 403 draft-forbidden`, async () => {
      const res = await request(stack.url, { method, path, headers, ...(body ? { body } : {}) });
      assertEnvelope(res, 403, 'draft-forbidden');
      assert.match(res.json().msg, /policy\.allowDrafts/);
      assertNothingReachedCoze(stack);
    });
  }

  it('the published values pass: publish_status published_online, draft_mode false, is_published=true, empty versions', async () => {
    for (const [method, path, body] of [
      ['POST', '/v3/chat', `{"bot_id":"${BOT}","publish_status":"published_online","bot_version":"","additional_messages":[]}`],
      ['POST', '/v1/conversation/create', `{"bot_id":"${BOT}","draft_mode":false}`],
      ['GET', `/v1/bots/${BOT}?is_published=true`, undefined],
    ] as const) {
      const res = await request(stack.url, { method, path, headers, ...(body ? { body } : {}) });
      assert.equal(res.status, 200, `${path}: ${res.body}`);
      assert.equal(res.headers['x-gateway-error'], undefined);
    }
  });

  it('policy.allowDrafts lets drafts and versions through unchanged', async () => {
    const open = await stack.replica({ ALLOW_DRAFTS: 'true' });
    const body = `{"bot_id":"${BOT}","publish_status":"unpublished_draft","bot_version":"1737125263991","additional_messages":[]}`;
    const res = await request(open.url, { method: 'POST', path: '/v3/chat', headers, body });
    assert.equal(res.status, 200, res.body);
    assert.equal(stack.emulator.requests.at(-1)?.rawBody, `${body.slice(0, -1)},"user_id":"alice"}`);
    await request(open.url, { path: `/v1/bots/${BOT}?is_published=false`, headers });
    assert.equal(stack.emulator.requests.at(-1)?.query.is_published, 'false');
    await open.close();
  });

  const apps: ReadonlyArray<readonly [string, string, string | undefined, string]> = [
    ['GET', `/v1/variables?app_id=${OTHER_APP}`, undefined, 'app-forbidden'],
    ['PUT', '/v1/variables', `{"app_id":"${OTHER_APP}","data":[]}`, 'app-forbidden'],
    ['POST', '/v1/workflow/run', `{"workflow_id":"${WORKFLOW}","app_id":"${OTHER_APP}"}`, 'app-forbidden'],
    ['POST', '/v1/workflow/stream_run', `{"workflow_id":"${WORKFLOW}","app_id":"${OTHER_APP}"}`, 'app-forbidden'],
    ['POST', '/v1/workflows/chat', `{"workflow_id":"${WORKFLOW}","app_id":"${OTHER_APP}","additional_messages":[]}`, 'app-forbidden'],
    ['POST', '/v1/conversation/create', `{"app_id":"${OTHER_APP}","workflow_id":"${WORKFLOW}"}`, 'app-forbidden'],
    ['POST', '/v1/conversation/create', `{"app_id":${OTHER_APP}}`, 'app-forbidden'],
    ['GET', `/v1/conversations?app_id=${OTHER_APP}`, undefined, 'app-forbidden'],
    ['POST', '/v1/conversation/create', `{"bot_id":"${OTHER_BOT}"}`, 'bot-forbidden'],
    ['POST', '/v1/workflows/chat', `{"workflow_id":"${OTHER_WORKFLOW}","additional_messages":[]}`, 'workflow-forbidden'],
  ];
  for (const [method, path, body, reason] of apps) {
    it(`${method} ${path} ${body ?? ''} is 403 ${reason}`, async () => {
      const res = await request(stack.url, { method, path, headers, ...(body ? { body } : {}) });
      assertEnvelope(res, 403, reason);
      assertNothingReachedCoze(stack);
    });
  }

  it('an allowed app_id passes', async () => {
    const res = await request(stack.url, { path: `/v1/variables?app_id=${APP}`, headers });
    assert.equal(res.status, 200, res.body);
    assert.equal(stack.emulator.requests.at(-1)?.query.app_id, APP);
  });

  const entities: ReadonlyArray<readonly [string, string, string]> = [
    ['/v1/audio/speech', `entity_type=bot&entity_id=${OTHER_BOT}`, 'bot-forbidden'],
    ['/v1/audio/speech', `entity_type=workflow&entity_id=${OTHER_WORKFLOW}`, 'workflow-forbidden'],
    ['/v1/audio/transcriptions', `entity_type=app&entity_id=${OTHER_APP}`, 'app-forbidden'],
    ['/v1/audio/transcriptions', `entity_type=workflow&entity_id=${BOT}`, 'workflow-forbidden'],
    ['/v1/audio/speech', `entity_id=${OTHER_BOT}`, 'ambiguous-field'],
    ['/v1/audio/speech', `entity_type=agent&entity_id=${BOT}`, 'ambiguous-field'],
    ['/v1/audio/speech', `entity_type=bot&entity_id=${BOT}&Entity_Id=${OTHER_BOT}`, 'ambiguous-field'],
  ];
  for (const [path, query, reason] of entities) {
    it(`WebSocket ${path}?${query} is refused with ${reason}`, async () => {
      const res = await refusedUpgrade(`${stack.url.replace('http', 'ws')}${path}?${query}`, { authorization: headers.authorization as string });
      assert.equal(res.gatewayError, reason);
      assert.equal(res.status, reason === 'ambiguous-field' ? 400 : 403);
      assertNothingReachedCoze(stack);
    });
  }

  it('WebSocket entity_id on the allowlist of its entity_type opens', async () => {
    const ws = await openWebSocket(`${stack.url.replace('http', 'ws')}/v1/audio/speech?entity_type=workflow&entity_id=${WORKFLOW}`, { authorization: headers.authorization as string });
    assert.equal(stack.emulator.websockets.at(-1)?.query.entity_id, WORKFLOW);
    ws.close();
    await closed(ws);
  });

  for (const path of [`/v1/bots/${BOT}`, `/v1/bot/get_online_info?bot_id=${BOT}`]) {
    it(`${path.split('?')[0]} answers the display fields only, in Coze's envelope`, async () => {
      const res = await request(stack.url, { path, headers });
      assert.equal(res.status, 200, res.body);
      const answer = JSON.parse(res.body) as { code: number; msg: string; data: Record<string, unknown>; detail: { logid: string } };
      assert.equal(answer.code, 0);
      assert.equal(answer.msg, '');
      assert.ok(answer.detail.logid);
      assert.deepEqual(Object.keys(answer.data), [...BOT_DISPLAY_FIELDS]);
      assert.deepEqual(answer.data.onboarding_info, { prologue: 'Hello!', suggested_questions: ['What can you do?'] });
      assert.equal(res.headers['content-length'], String(Buffer.byteLength(res.body)));
      for (const secret of ['prompt', 'Never reveal', 'model_info', 'plugin_info_list', 'owner_user_id', '4200000000000000001', 'knowledge', 'variables']) assert.ok(!res.body.includes(secret), secret);
    });
  }

  it('policy.botInfo: full passes the whole configuration', async () => {
    const full = await stack.replica({ POLICY_BOT_INFO: 'full' });
    const res = await request(full.url, { path: `/v1/bots/${BOT}`, headers });
    const data = (JSON.parse(res.body) as { data: Record<string, unknown> }).data;
    assert.ok('prompt_info' in data && 'owner_user_id' in data && 'model_info' in data);
    await full.close();
  });
});
