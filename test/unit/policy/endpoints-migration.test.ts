import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ENDPOINTS } from '../../../src/policy/endpoints.js';

/**
 * One-off migration check for issue 15 (delete it after the merge): the endpoint table yields
 * exactly the routes and identity fields of the tables it replaced (the former default-routes.ts
 * and the name-keyed sets of the former body-policy.ts), restated here as they were.
 */
const OLD_ROUTES: ReadonlyArray<readonly [string, string, string]> = [["conversation.create","POST","/v1/conversation/create"],["conversation.retrieve","GET","/v1/conversation/retrieve"],["conversation.list","GET","/v1/conversations"],["conversation.update","PUT","/v1/conversations/:conversation_id"],["conversation.delete","DELETE","/v1/conversations/:conversation_id"],["conversation.clear","POST","/v1/conversations/:conversation_id/clear"],["message.create","POST","/v1/conversation/message/create"],["message.list","POST","/v1/conversation/message/list"],["message.retrieve","GET","/v1/conversation/message/retrieve"],["message.retrieve","POST","/v1/conversation/message/retrieve"],["message.modify","POST","/v1/conversation/message/modify"],["message.delete","POST","/v1/conversation/message/delete"],["message.feedback.create","POST","/v1/conversations/:conversation_id/messages/:message_id/feedback"],["message.feedback.delete","DELETE","/v1/conversations/:conversation_id/messages/:message_id/feedback"],["chat","POST","/v3/chat"],["chat.retrieve","GET","/v3/chat/retrieve"],["chat.retrieve","POST","/v3/chat/retrieve"],["chat.message.list","GET","/v3/chat/message/list"],["chat.submit_tool_outputs","POST","/v3/chat/submit_tool_outputs"],["chat.cancel","POST","/v3/chat/cancel"],["workflow.run","POST","/v1/workflow/run"],["workflow.stream_run","POST","/v1/workflow/stream_run"],["workflow.stream_resume","POST","/v1/workflow/stream_resume"],["workflow.resume","POST","/v1/workflows/resume"],["workflow.chat","POST","/v1/workflows/chat"],["workflow.run_history","GET","/v1/workflows/:workflow_id/run_histories/:execute_id"],["workflow.node_history","GET","/v1/workflows/:workflow_id/run_histories/:execute_id/execute_nodes/:node_execute_uuid"],["file.upload","POST","/v1/files/upload"],["file.retrieve","GET","/v1/files/retrieve"],["audio.speech","POST","/v1/audio/speech"],["audio.transcriptions","POST","/v1/audio/transcriptions"],["audio.voices","GET","/v1/audio/voices"],["audio.rooms","POST","/v1/audio/rooms"],["audio.live","GET","/v1/audio/live/:live_id"],["variables.get","GET","/v1/variables"],["variables.update","PUT","/v1/variables"],["bot.retrieve","GET","/v1/bots/:bot_id"],["bot.online_info","GET","/v1/bot/get_online_info"],["ws.chat","GET","/v1/chat"],["ws.audio.speech","GET","/v1/audio/speech"],["ws.audio.transcriptions","GET","/v1/audio/transcriptions"],["ws.audio.simult_interpretation","GET","/v1/audio/simult_interpretation"]];
const OLD_BODY_IDENTITY_FIELDS: Record<string, string[]> = {
  chat: ['user_id'],
  'workflow.run': ['ext.user_id'],
  'workflow.stream_run': ['ext.user_id'],
  'workflow.chat': ['ext.user_id'],
  'variables.update': ['connector_uid'],
  'audio.rooms': ['uid'],
};
const OLD_BODY_ROUTES = [...Object.keys(OLD_BODY_IDENTITY_FIELDS), 'conversation.create', 'workflow.stream_resume', 'workflow.resume', 'chat.submit_tool_outputs'];
const OLD_QUERY_IDENTITY_FIELDS: Record<string, string[]> = { 'variables.get': ['connector_uid'] };

describe('endpoint table migration (issue 15, one-off)', () => {
  it('has exactly the old routes: the same names, methods and paths', () => {
    const now = ENDPOINTS.map((e) => [e.name, e.method, e.path].join(' ')).sort();
    assert.deepEqual(now, OLD_ROUTES.map((r) => r.join(' ')).sort());
  });

  it('forces exactly the old identity fields, in bodies and queries', () => {
    const body = Object.fromEntries(ENDPOINTS.flatMap((e) => (e.body.kind === 'json' && 'user' in e.body.fields && e.body.fields.user ? [[e.name, [...e.body.fields.user]]] : [])));
    assert.deepEqual(body, OLD_BODY_IDENTITY_FIELDS);
    const query = Object.fromEntries(ENDPOINTS.flatMap((e) => ('user' in e.query && e.query.user ? [[e.name, [...e.query.user]]] : [])));
    assert.deepEqual(query, OLD_QUERY_IDENTITY_FIELDS);
  });

  it('still reads every body it read before, and the name-keyed rules became fields of the entry', () => {
    for (const name of OLD_BODY_ROUTES) assert.ok(ENDPOINTS.some((e) => e.name === name && e.body.kind === 'json'), name);
    assert.deepEqual(ENDPOINTS.filter((e) => e.transport === 'websocket').map((e) => e.name), ENDPOINTS.filter((e) => e.name.startsWith('ws.')).map((e) => e.name));
    assert.deepEqual(ENDPOINTS.filter((e) => 'framing' in e && e.framing === 'workflow').map((e) => e.name), ENDPOINTS.filter((e) => e.name.startsWith('workflow.stream')).map((e) => e.name));
  });
});
