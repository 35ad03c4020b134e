import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertEnvelope, request } from '../helpers/http.js';
import { assertNothingReachedCoze, startStack, type Stack } from '../helpers/stack.js';

const BOT = '7000000000000000001';
const WORKFLOW = '7100000000000000001';

/**
 * Issue 15, finding 1: identity keys in another letter case passed. A Go backend's
 * encoding/json reads `USER_ID` (and `uſer_id`, with a long s) into a user_id field, so a body
 * the gateway had forced could still name bob. Every key that equals a controlled field ignoring
 * case, and every repeat of one (or of its parent), is now 400 ambiguous-field before Coze.
 */
describe('identity-key-case: identity and scope keys in another letter case, or repeated, are refused', () => {
  let stack: Stack;
  let headers: Record<string, string>;
  before(async () => {
    stack = await startStack({ env: { ALLOWED_BOT_IDS: BOT, ALLOWED_WORKFLOW_IDS: WORKFLOW } });
    headers = { authorization: `Bearer ${await stack.callerToken('alice')}`, 'content-type': 'application/json' };
  });
  after(() => stack.close());
  beforeEach(() => stack.emulator.reset());

  const cases: ReadonlyArray<readonly [string, string, string]> = [
    // [method path, body, what it tries]
    ['POST /v3/chat', `{"bot_id":"${BOT}","user_id":"x","USER_ID":"bob"}`, 'USER_ID next to user_id'],
    ['POST /v3/chat', `{"bot_id":"${BOT}","USER_ID":"bob"}`, 'USER_ID alone'],
    ['POST /v3/chat', `{"bot_id":"${BOT}","User_Id":"bob"}`, 'User_Id'],
    ['POST /v3/chat', `{"bot_id":"${BOT}","u\u017fer_id":"bob"}`, 'uſer_id (long s folds to s in Go)'],
    ['POST /v3/chat', `{"bot_id":"${BOT}","us\\u0045r_id":"bob"}`, 'an escaped upper-case letter'],
    ['POST /v3/chat', `{"bot_id":"${BOT}","BOT_ID":"7999999999999999999"}`, 'BOT_ID off the allowlist next to an allowed bot_id'],
    ['POST /v3/chat', `{"bot_id":"${BOT}","bot_id":"7999999999999999999"}`, 'bot_id twice'],
    ['POST /v3/chat', `{"bot_id":"${BOT}","user_id":"x","user_id":"bob"}`, 'user_id twice'],
    ['POST /v3/chat', `{"bot_id":"${BOT}","Publish_Status":"unpublished_draft"}`, 'a draft field in another case'],
    ['POST /v1/workflow/run', `{"workflow_id":"${WORKFLOW}","EXT":{"user_id":"bob"}}`, 'EXT.user_id'],
    ['POST /v1/workflow/run', `{"workflow_id":"${WORKFLOW}","ext":{"USER_ID":"bob"}}`, 'ext.USER_ID'],
    ['POST /v1/workflow/run', `{"workflow_id":"${WORKFLOW}","ext":{"user_id":"x"},"ext":{"user_id":"bob"}}`, 'ext twice'],
    ['POST /v1/workflow/stream_run', `{"workflow_id":"${WORKFLOW}","Workflow_Id":"7199999999999999999"}`, 'Workflow_Id off the allowlist'],
    ['POST /v1/workflow/stream_run', `{"workflow_id":"${WORKFLOW}","wor\u212Aflow_id":"7199999999999999999"}`, 'the Kelvin sign folds to k in Go'],
    ['POST /v1/workflows/chat', `{"workflow_id":"${WORKFLOW}","Ext":{"user_id":"bob"}}`, 'Ext on a chatflow'],
    ['PUT /v1/variables', `{"bot_id":"${BOT}","connector_uid":"x","Connector_UID":"bob","data":[]}`, 'Connector_UID'],
    ['POST /v1/audio/rooms', `{"bot_id":"${BOT}","uid":"x","UID":"bob"}`, 'UID'],
    ['POST /v1/conversation/create', `{"bot_id":"${BOT}","App_Id":"7299999999999999999"}`, 'App_Id'],
  ];

  for (const [target, body, what] of cases) {
    it(`${target}: ${what} is 400 ambiguous-field and nothing reaches Coze`, async () => {
      const [method, path] = target.split(' ') as [string, string];
      const res = await request(stack.url, { method, path, headers, body });
      assertEnvelope(res, 400, 'ambiguous-field');
      assert.match(res.json().msg, /only in letter case|more than once/);
      assert.ok(!res.body.includes('bob'), 'the refused value is not echoed');
      assertNothingReachedCoze(stack);
    });
  }

  it('the control case: the exact keys, once each, pass and are forced', async () => {
    const res = await request(stack.url, { method: 'POST', path: '/v3/chat', headers, body: `{"bot_id":"${BOT}","user_id":"bob","meta_data":{"USER_ID":"free text"},"additional_messages":[]}` });
    assert.equal(res.status, 200, res.body);
    // Only the controlled keys are controlled: the caller's own metadata keeps its keys.
    assert.equal(stack.emulator.requests.at(-1)?.rawBody, `{"bot_id":"${BOT}","user_id":"alice","meta_data":{"USER_ID":"free text"},"additional_messages":[]}`);
  });
});
