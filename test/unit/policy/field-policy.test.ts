import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../../../src/errors.js';
import { ENDPOINTS, type Endpoint } from '../../../src/policy/endpoints.js';
import { createFieldRules, foldKey } from '../../../src/policy/field-policy.js';
import type { ScopeOptions } from '../../../src/policy/scope-check.js';

const endpoint = (name: string) => ENDPOINTS.find((e) => e.name === name) as Endpoint;
const OPTIONS: ScopeOptions = { enforceUserId: true, allowDrafts: false, botInfo: 'display', allowedBotIds: ['b1'], allowedAppIds: ['a1'] };
const body = (name: string, text: string, options = OPTIONS) => (createFieldRules(endpoint(name), options).rewriteBody as (b: Buffer, s: string) => Buffer)(Buffer.from(text), 'alice').toString();
const refused = (reason: string, detail?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof GatewayError, String(err));
  assert.equal(err.reason, reason);
  if (detail) assert.match(err.message, detail);
  return true;
};

describe('field policy: controlled fields of bodies and events', () => {
  it('folds keys as Go encoding/json matches them', () => {
    assert.equal(foldKey('USER_ID'), 'user_id');
    assert.equal(foldKey('u\u017fer_id'), 'user_id', 'long s');
    assert.equal(foldKey('wor\u212Aflow_id'), 'workflow_id', 'Kelvin sign');
  });

  it('forces the user field, checks the scopes, keeps every other byte', () => {
    assert.equal(body('chat', '{ "bot_id" : "b1", "user_id":"bob", "n": 12345678901234567890 }'), '{ "bot_id" : "b1", "user_id":"alice", "n": 12345678901234567890 }');
    assert.equal(body('workflow.run', '{"workflow_id":"w","parameters":{"x":1.0}}'), '{"workflow_id":"w","parameters":{"x":1.0},"ext":{"user_id":"alice"}}');
    assert.throws(() => body('chat', '{"bot_id":"b2"}'), refused('bot-forbidden', /\(bot_id\)/));
    assert.throws(() => body('chat', '{"bot_id":7}'), refused('bot-forbidden'), 'a number never matches an id allowlist');
    assert.throws(() => body('variables.update', '{"app_id":"a2"}'), refused('app-forbidden', /\(app_id\)/));
    assert.equal(body('variables.update', '{"app_id":"a1","connector_uid":"bob"}'), '{"app_id":"a1","connector_uid":"alice"}');
  });

  it('refuses keys equal to a controlled field ignoring case, and repeats, at every level of a controlled path', () => {
    for (const text of ['{"USER_ID":"bob"}', '{"user_id":"a","User_Id":"bob"}', '{"user_id":"a","user_id":"bob"}', '{"BOT_ID":"b2"}', '{"bot_id":"b1","bot_id":"b2"}', '{"Draft_Mode":true}']) {
      assert.throws(() => body('chat', text), refused('ambiguous-field'), text);
    }
    for (const text of ['{"EXT":{"user_id":"bob"}}', '{"ext":{"USER_ID":"bob"}}', '{"ext":{},"ext":{"user_id":"bob"}}', '{"ext":{"user_id":"a","user_id":"bob"}}']) {
      assert.throws(() => body('workflow.run', text), refused('ambiguous-field'), text);
    }
    // Keys outside the controlled paths are the caller's own: they keep their case and repeats.
    assert.equal(body('chat', '{"bot_id":"b1","meta_data":{"USER_ID":"x","USER_ID":"y"}}'), '{"bot_id":"b1","meta_data":{"USER_ID":"x","USER_ID":"y"},"user_id":"alice"}');
  });

  it('refuses drafts and versions unless allowDrafts; published values pass', () => {
    assert.throws(() => body('chat', '{"publish_status":"unpublished_draft"}'), refused('draft-forbidden', /publish_status must be published_online/));
    assert.throws(() => body('chat', '{"bot_version":"1"}'), refused('draft-forbidden', /bot_version is not accepted/));
    assert.throws(() => body('workflow.chat', '{"workflow_version":"v1"}'), refused('draft-forbidden'));
    assert.throws(() => body('conversation.create', '{"draft_mode":true}'), refused('draft-forbidden'));
    assert.throws(() => body('conversation.create', '{"draft_mode":{}}'), refused('draft-forbidden'));
    assert.equal(body('conversation.create', '{"draft_mode":false,"bot_version":"","publish_status":null}'), '{"draft_mode":false,"bot_version":"","publish_status":null}');
    assert.equal(body('chat', '{"bot_version":"1"}', { ...OPTIONS, allowDrafts: true }), '{"bot_version":"1","user_id":"alice"}');
  });

  it('with enforceUserId off, user fields pass as sent; scopes are still checked', () => {
    const off = { ...OPTIONS, enforceUserId: false };
    assert.equal(body('chat', '{"bot_id":"b1","user_id":"bob"}', off), '{"bot_id":"b1","user_id":"bob"}');
    assert.throws(() => body('chat', '{"bot_id":"b9"}', off), refused('bot-forbidden'));
  });

  it('events: a chat.update is forced; ambiguity of event_type or of the forced path refuses the frame; non-JSON frames pass', () => {
    const rewrite = createFieldRules(endpoint('ws.chat'), OPTIONS).rewriteEvent as (b: Buffer, s: string) => Buffer | undefined;
    const run = (text: string) => rewrite(Buffer.from(text), 'alice')?.toString();
    assert.equal(run('{"event_type":"chat.update","data":{"chat_config":{"user_id":"bob"}}}'), '{"event_type":"chat.update","data":{"chat_config":{"user_id":"alice"}}}');
    assert.equal(run('{"event_type":"chat.update"}'), '{"event_type":"chat.update"}', 'no data: nothing names a user');
    assert.equal(run('{"event_type":"chat\\u002eupdate","data":{"chat_config":{"user_id":"bob"}}}'), '{"event_type":"chat\\u002eupdate","data":{"chat_config":{"user_id":"alice"}}}', 'an escaped event type is still a chat.update');
    const audio = Buffer.from(`{"event_type":"input_audio_buffer.append","data":{"delta":"${'A'.repeat(65536)}"}}`);
    assert.equal(rewrite(audio, 'alice'), audio, 'a frame that cannot name chat.update passes as the same buffer, unparsed');
    assert.equal(run('{"event_type":"input_audio_buffer.append","delta":"AAAA"}'), '{"event_type":"input_audio_buffer.append","delta":"AAAA"}');
    for (const text of [
      '{"event_type":"chat.update","event_type":"x","data":{"chat_config":{"user_id":"bob"}}}',
      '{"Event_Type":"chat.update","data":{"chat_config":{"user_id":"bob"}}}',
      '{"event_type":"chat.update","data":{"chat_config":{"uSer_id":"bob"}}}',
      '{"event_type":"chat.update","data":{},"data":{"chat_config":{"user_id":"bob"}}}',
      `{"event_type":"chat.update","x":${'['.repeat(300)}${']'.repeat(300)}}`,
    ]) {
      assert.equal(run(text), undefined, text.slice(0, 80));
    }
    // Not strict JSON, yet a more lenient decoder (one that skips a byte-order mark, stops after
    // the first value, or takes comments) would read a chat.update with the user id unforced.
    for (const text of [
      '\uFEFF{"event_type":"chat.update","data":{"chat_config":{"user_id":"bob"}}}',
      '{"event_type":"chat.update","data":{"chat_config":{"user_id":"bob"}}} trailing',
      '{"event_type":"chat.update","data":{"chat_config":{"user_id":"bob"}}}\u0000',
      '{"event_type":"input_text_buffer.append"}{"event_type":"chat.update","data":{"chat_config":{"user_id":"bob"}}}',
      '{"event_type":"chat\\u002eupdate","data":{"chat_config":{"user_id":"bob"}}}x',
      '\uFEFF{"event_type":"chat\\u002eupdate","data":{"chat_config":{"user_id":"bob"}}}',
      '{"event_type":"chat.update",/* c */"data":{"chat_config":{"user_id":"bob"}}}',
      '{"event_type":"chat.update","data":{"chat_config":{"user_id":"bob",}}}',
    ]) {
      assert.equal(run(text), undefined, JSON.stringify(text));
    }
    assert.equal(run('\uFEFF{"event_type":"input_text_buffer.append"}'), '\uFEFF{"event_type":"input_text_buffer.append"}', 'nothing in it could be a chat.update');
    assert.equal(run('{not json at all'), '{not json at all', 'raw audio that starts with { is not an event');
    assert.equal(run('{\\u00ff raw "audio" \\u12'), '{\\u00ff raw "audio" \\u12', 'nor is raw audio holding a \\u');
    assert.equal(run('binary audio'), 'binary audio');
    // A frame that must be read is read only up to 256 KiB: past that the strict parse would hold
    // the event loop for tens of milliseconds a frame.
    const escaped = (n: number) => `{"event_type":"conversation.message.create","data":{"content":"${'\\u00e9'.repeat(n)}"}}`;
    assert.equal(run(escaped(40_000)), escaped(40_000), 'under the bound: read, and passed');
    assert.equal(run(escaped(50_000)), undefined, 'over it: refused unread');
    assert.equal(rewrite(Buffer.from(`{"event_type":"input_audio_buffer.append","data":{"delta":"${'A'.repeat(1 << 20)}"}}`), 'alice')?.length, (1 << 20) + 62, 'audio, which names no controlled event, has no such bound');
    assert.equal(createFieldRules(endpoint('ws.audio.speech'), OPTIONS).rewriteEvent, null, 'no controlled event: every frame passes unread');
    assert.equal(createFieldRules(endpoint('ws.chat'), { ...OPTIONS, enforceUserId: false }).rewriteEvent, null);
  });

  it('bot info answers keep the display fields byte for byte, in the envelope; errors and full pass', () => {
    const filter = createFieldRules(endpoint('bot.retrieve'), OPTIONS).filterResponse as (b: Buffer) => Buffer;
    const answer = '{"code":0,"msg":"","data":{"bot_id":"7000000000000000001","name":"n","prompt_info":{"prompt":"secret"},"onboarding_info":{"prologue":"hi","suggested_questions":["q"]},"version":12345678901234567890,"owner_user_id":"42","icon_url":"u","description":"d\\u00e9","voice_info_list":[{"voice_id":"1","speed":1.0}]},"detail":{"logid":"L"}}';
    assert.equal(
      filter(Buffer.from(answer)).toString(),
      '{"code":0,"msg":"","data":{"bot_id":"7000000000000000001","name":"n","onboarding_info":{"prologue":"hi","suggested_questions":["q"]},"icon_url":"u","description":"d\\u00e9","voice_info_list":[{"voice_id":"1","speed":1.0}]},"detail":{"logid":"L"}}',
    );
    const error = Buffer.from('{"code":4200,"msg":"bot not found","detail":{"logid":"L"}}');
    assert.equal(filter(error), error);
    assert.equal(createFieldRules(endpoint('bot.retrieve'), { ...OPTIONS, botInfo: 'full' }).filterResponse, null);
    assert.equal(createFieldRules(endpoint('chat'), OPTIONS).filterResponse, null);
  });
});
