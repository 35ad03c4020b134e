import type { RouteRule } from '../config/schema.js';

/**
 * Coze's end-user API (https://www.coze.cn/open/docs/developer_guides/coze_api_overview), plus the
 * realtime WebSocket paths: every end-user call of the official SDKs. Management APIs (bots,
 * workspaces, datasets, apps) and /api/permission/* are absent on purpose. Each name is the
 * `route` label in metrics and logs; one endpoint the SDKs call with two methods keeps one name.
 */
export const DEFAULT_ROUTES: readonly RouteRule[] = [
  { name: 'conversation.create', method: 'POST', path: '/v1/conversation/create' },
  { name: 'conversation.retrieve', method: 'GET', path: '/v1/conversation/retrieve' },
  { name: 'conversation.list', method: 'GET', path: '/v1/conversations' },
  { name: 'conversation.update', method: 'PUT', path: '/v1/conversations/:conversation_id' },
  { name: 'conversation.delete', method: 'DELETE', path: '/v1/conversations/:conversation_id' },
  { name: 'conversation.clear', method: 'POST', path: '/v1/conversations/:conversation_id/clear' },
  { name: 'message.create', method: 'POST', path: '/v1/conversation/message/create' },
  { name: 'message.list', method: 'POST', path: '/v1/conversation/message/list' },
  { name: 'message.retrieve', method: 'GET', path: '/v1/conversation/message/retrieve' },
  // coze-java sends POST with the ids in the query (ConversationMessageAPI.java).
  { name: 'message.retrieve', method: 'POST', path: '/v1/conversation/message/retrieve' },
  { name: 'message.modify', method: 'POST', path: '/v1/conversation/message/modify' },
  { name: 'message.delete', method: 'POST', path: '/v1/conversation/message/delete' },
  { name: 'message.feedback.create', method: 'POST', path: '/v1/conversations/:conversation_id/messages/:message_id/feedback' },
  { name: 'message.feedback.delete', method: 'DELETE', path: '/v1/conversations/:conversation_id/messages/:message_id/feedback' },
  { name: 'chat', method: 'POST', path: '/v3/chat' },
  { name: 'chat.retrieve', method: 'GET', path: '/v3/chat/retrieve' },
  // coze-js and coze-py poll with POST (createAndPoll, create_and_poll); coze-go and coze-java with GET.
  { name: 'chat.retrieve', method: 'POST', path: '/v3/chat/retrieve' },
  { name: 'chat.message.list', method: 'GET', path: '/v3/chat/message/list' },
  { name: 'chat.submit_tool_outputs', method: 'POST', path: '/v3/chat/submit_tool_outputs' },
  { name: 'chat.cancel', method: 'POST', path: '/v3/chat/cancel' },
  { name: 'workflow.run', method: 'POST', path: '/v1/workflow/run' },
  { name: 'workflow.stream_run', method: 'POST', path: '/v1/workflow/stream_run' },
  { name: 'workflow.stream_resume', method: 'POST', path: '/v1/workflow/stream_resume' },
  { name: 'workflow.resume', method: 'POST', path: '/v1/workflows/resume' },
  { name: 'workflow.chat', method: 'POST', path: '/v1/workflows/chat' },
  { name: 'workflow.run_history', method: 'GET', path: '/v1/workflows/:workflow_id/run_histories/:execute_id' },
  { name: 'workflow.node_history', method: 'GET', path: '/v1/workflows/:workflow_id/run_histories/:execute_id/execute_nodes/:node_execute_uuid' },
  { name: 'file.upload', method: 'POST', path: '/v1/files/upload' },
  { name: 'file.retrieve', method: 'GET', path: '/v1/files/retrieve' },
  { name: 'audio.speech', method: 'POST', path: '/v1/audio/speech' },
  { name: 'audio.transcriptions', method: 'POST', path: '/v1/audio/transcriptions' },
  { name: 'audio.voices', method: 'GET', path: '/v1/audio/voices' },
  { name: 'audio.rooms', method: 'POST', path: '/v1/audio/rooms' },
  // The listener side of a simultaneous interpretation (audio.live.retrieve in JS, Python and Go).
  { name: 'audio.live', method: 'GET', path: '/v1/audio/live/:live_id' },
  { name: 'variables.get', method: 'GET', path: '/v1/variables' },
  { name: 'variables.update', method: 'PUT', path: '/v1/variables' },
  { name: 'bot.retrieve', method: 'GET', path: '/v1/bots/:bot_id' },
  { name: 'bot.online_info', method: 'GET', path: '/v1/bot/get_online_info' },
  { name: 'ws.chat', method: 'GET', path: '/v1/chat' },
  { name: 'ws.audio.speech', method: 'GET', path: '/v1/audio/speech' },
  { name: 'ws.audio.transcriptions', method: 'GET', path: '/v1/audio/transcriptions' },
  { name: 'ws.audio.simult_interpretation', method: 'GET', path: '/v1/audio/simult_interpretation' },
];
