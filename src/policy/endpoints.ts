/**
 * The one endpoint table (issue 15). Each entry is a Coze endpoint the official SDKs call for an
 * end user, with everything the gateway enforces on it: which body, query and WebSocket event
 * fields name the user (forced to the session_name), the bot, the workflow and the app (checked
 * against the allowlists), which fields pick a draft or a pinned version, how the body travels,
 * how an SSE stream is framed, and what of the answer is kept. The route match returns the
 * entry itself, so a policy can never be detached from its endpoint by a name: the name is a
 * label for metrics and logs only. docs/routes.md is printed from this table
 * (`npm run docs:routes`, kept equal by test/contract/docs-drift.test.ts).
 *
 * Coze's end-user API: https://www.coze.cn/open/docs/developer_guides/coze_api_overview; the
 * calls and fields each official SDK sends are listed in docs/sdk.md.
 * Management APIs (bots, workspaces, datasets, apps) and /api/permission/* are absent on purpose.
 */

export const SCOPES = ['user', 'bot', 'workflow', 'app'] as const;
export type Scope = (typeof SCOPES)[number];

/** A field whose value can pick an unpublished draft or a pinned version (chat's publish_status and bot_version, workflow_version, draft_mode, is_published). */
export interface DraftField {
  readonly field: string;
  /** The values that keep to the published bot or workflow; empty: any value is refused. */
  readonly published: readonly string[];
}

/**
 * The fields of one place (a JSON body, a query, an event) that the gateway controls, as dotted
 * paths. `user` fields are forced to the session_name; `bot`, `workflow` and `app` fields are
 * checked against policy.allowedBotIds, allowedWorkflowIds and allowedAppIds; `draft` fields are
 * refused unless policy.allowDrafts; `entity` is a type/id pair whose id is checked against the
 * allowlist its type names.
 */
export interface FieldPolicy {
  readonly user?: readonly string[];
  readonly bot?: readonly string[];
  readonly workflow?: readonly string[];
  readonly app?: readonly string[];
  readonly draft?: readonly DraftField[];
  readonly entity?: { readonly type: string; readonly id: string };
}

/**
 * How a request body travels. `none`: the endpoint takes no body, and one is refused. `stream`:
 * forwarded unread (uploads). `json`: read (within the memory budget), checked and rewritten
 * losslessly; `required` says whether a request without one is refused.
 */
export type BodyRule = { readonly kind: 'none' } | { readonly kind: 'stream' } | { readonly kind: 'json'; readonly required: boolean; readonly fields: FieldPolicy };

/** What the caller gets of a successful JSON answer: only `keep` of the object at the root member `key`. */
export interface ResponseRule {
  readonly kind: 'display-fields';
  readonly key: string;
  readonly keep: readonly string[];
}

export const TRANSPORTS = ['http', 'sse', 'websocket', 'local'] as const;
export type Transport = (typeof TRANSPORTS)[number];
export const FRAMINGS = ['chat', 'workflow'] as const;
export type Framing = (typeof FRAMINGS)[number];
/**
 * Where an answer reports the Coze tokens it spent (issue 18; src/usage/usage-observer.ts reads
 * them): `chat`, a Chat object's usage once the chat has ended (JSON, chat SSE, realtime events);
 * `workflow`, a run's top-level usage or that of its stream's Message events; `history`, an async
 * run's usage in its run history.
 */
export const USAGE_SHAPES = ['chat', 'workflow', 'history'] as const;
export type UsageShape = (typeof USAGE_SHAPES)[number];
/** PATCH only for passthrough routes: no built-in endpoint uses it. */
export const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'] as const;
export type Method = (typeof METHODS)[number];

export interface Endpoint {
  /** A metrics and log label, never a lookup key. One endpoint called with two methods keeps one name. */
  readonly name: string;
  readonly method: Method;
  /** `:param` segments match one segment of [A-Za-z0-9_-]; path parameters are checked like query fields of the same name. */
  readonly path: `/${string}`;
  /** `sse`: may answer with an event stream (framing says how the gateway's own final event looks); `local`: answered by the gateway. */
  readonly transport: Transport;
  readonly body: BodyRule;
  readonly query: FieldPolicy;
  /** WebSocket client events by event_type; required on websocket endpoints, even when empty. */
  readonly events?: Readonly<Record<string, FieldPolicy>>;
  readonly framing?: Framing;
  readonly response?: ResponseRule;
  /** An operator route the gateway knows no policy for (policy.routes with passthrough: true). */
  readonly passthrough?: boolean;
  /** Where its answers report token usage; absent: they report none. */
  readonly usage?: UsageShape;
  /**
   * It generates nothing (a read, an upload, polling or cancelling a chat under way): a caller
   * over a token budget keeps it, so a chat started before the budget ran out can still be
   * followed to its end. A request budget counts it like any request.
   */
  readonly tokenFree?: true;
  /** Its line in docs/routes.md. */
  readonly summary: string;
}

/**
 * Fields that name a Coze-side user in a query string. Where an endpoint takes one there
 * (GET /v1/variables), it is forced; anywhere else it is refused, because Coze's binder may read
 * the query as well as the body (issue 15, finding 3).
 */
export const QUERY_IDENTITY_FIELDS = ['user_id', 'connector_uid', 'uid'] as const;

/** Drafts and versions: refused unless policy.allowDrafts. */
const DRAFT_FIELDS: readonly DraftField[] = [
  { field: 'publish_status', published: ['published_online'] },
  { field: 'bot_version', published: [] },
  { field: 'workflow_version', published: [] },
  { field: 'draft_mode', published: ['false'] },
  { field: 'is_published', published: ['true'] },
];

/** Every query (and path parameter) is checked for these, on every endpoint. */
const QUERY: FieldPolicy = { bot: ['bot_id'], workflow: ['workflow_id'], app: ['app_id'], draft: DRAFT_FIELDS };

/** Every JSON body the gateway reads is checked for these at its root. */
export const BODY_POLICY: FieldPolicy = { bot: ['bot_id'], workflow: ['workflow_id'], app: ['app_id'], draft: DRAFT_FIELDS };

const NONE: BodyRule = { kind: 'none' };
const STREAM: BodyRule = { kind: 'stream' };
const json = (required: boolean, user: readonly string[] = []): BodyRule => ({ kind: 'json', required, fields: user.length ? { ...BODY_POLICY, user } : BODY_POLICY });

/**
 * What a bot's info answer keeps unless policy.botInfo is full: what a chat UI shows. The rest
 * (prompt_info, model_info, plugins, knowledge, variables, owner_user_id) is the operator's.
 */
export const BOT_DISPLAY_FIELDS = ['bot_id', 'name', 'description', 'icon_url', 'onboarding_info', 'voice_info_list'] as const;
const BOT_INFO: ResponseRule = { kind: 'display-fields', key: 'data', keep: BOT_DISPLAY_FIELDS };

export const ENDPOINTS = [
  { name: 'conversation.create', method: 'POST', path: '/v1/conversation/create', transport: 'http', body: json(false), query: QUERY, tokenFree: true, summary: 'Create a conversation.' },
  { name: 'conversation.retrieve', method: 'GET', path: '/v1/conversation/retrieve', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: 'Read a conversation.' },
  { name: 'conversation.list', method: 'GET', path: '/v1/conversations', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: "List the caller's conversations with a bot." },
  { name: 'conversation.update', method: 'PUT', path: '/v1/conversations/:conversation_id', transport: 'http', body: json(false), query: QUERY, tokenFree: true, summary: 'Rename a conversation (coze-py).' },
  { name: 'conversation.delete', method: 'DELETE', path: '/v1/conversations/:conversation_id', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: 'Delete a conversation (coze-py).' },
  { name: 'conversation.clear', method: 'POST', path: '/v1/conversations/:conversation_id/clear', transport: 'http', body: json(false), query: QUERY, tokenFree: true, summary: 'Clear the context of a conversation.' },
  { name: 'message.create', method: 'POST', path: '/v1/conversation/message/create', transport: 'http', body: json(false), query: QUERY, tokenFree: true, summary: 'Add a message to a conversation.' },
  { name: 'message.list', method: 'POST', path: '/v1/conversation/message/list', transport: 'http', body: json(false), query: QUERY, tokenFree: true, summary: 'List the messages of a conversation.' },
  { name: 'message.retrieve', method: 'GET', path: '/v1/conversation/message/retrieve', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: 'Read a message.' },
  // coze-java sends POST with the ids in the query and an empty body (ConversationMessageAPI.java).
  { name: 'message.retrieve', method: 'POST', path: '/v1/conversation/message/retrieve', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: 'Read a message (coze-java).' },
  { name: 'message.modify', method: 'POST', path: '/v1/conversation/message/modify', transport: 'http', body: json(false), query: QUERY, tokenFree: true, summary: 'Edit a message.' },
  { name: 'message.delete', method: 'POST', path: '/v1/conversation/message/delete', transport: 'http', body: json(false), query: QUERY, tokenFree: true, summary: 'Delete a message.' },
  { name: 'message.feedback.create', method: 'POST', path: '/v1/conversations/:conversation_id/messages/:message_id/feedback', transport: 'http', body: json(false), query: QUERY, tokenFree: true, summary: 'Rate a message (coze-py, coze-go).' },
  { name: 'message.feedback.delete', method: 'DELETE', path: '/v1/conversations/:conversation_id/messages/:message_id/feedback', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: 'Remove a rating (coze-py, coze-go).' },
  { name: 'chat', method: 'POST', path: '/v3/chat', transport: 'sse', framing: 'chat', body: json(true, ['user_id']), query: QUERY, usage: 'chat', summary: 'Chat with a bot, streamed or not.' },
  { name: 'chat.retrieve', method: 'GET', path: '/v3/chat/retrieve', transport: 'http', body: NONE, query: QUERY, usage: 'chat', tokenFree: true, summary: 'Poll a chat (coze-go, coze-java).' },
  // coze-js and coze-py poll with POST and no body (createAndPoll, create_and_poll).
  { name: 'chat.retrieve', method: 'POST', path: '/v3/chat/retrieve', transport: 'http', body: NONE, query: QUERY, usage: 'chat', tokenFree: true, summary: 'Poll a chat (coze-js, coze-py).' },
  { name: 'chat.message.list', method: 'GET', path: '/v3/chat/message/list', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: 'List the messages of a chat.' },
  { name: 'chat.submit_tool_outputs', method: 'POST', path: '/v3/chat/submit_tool_outputs', transport: 'sse', framing: 'chat', body: json(true), query: QUERY, usage: 'chat', summary: 'Answer a tool call of a chat, streamed or not.' },
  { name: 'chat.cancel', method: 'POST', path: '/v3/chat/cancel', transport: 'http', body: json(false), query: QUERY, usage: 'chat', tokenFree: true, summary: 'Cancel a chat.' },
  { name: 'workflow.run', method: 'POST', path: '/v1/workflow/run', transport: 'http', body: json(true, ['ext.user_id']), query: QUERY, usage: 'workflow', summary: 'Run a workflow.' },
  { name: 'workflow.stream_run', method: 'POST', path: '/v1/workflow/stream_run', transport: 'sse', framing: 'workflow', body: json(true, ['ext.user_id']), query: QUERY, usage: 'workflow', summary: 'Run a workflow, streamed.' },
  { name: 'workflow.stream_resume', method: 'POST', path: '/v1/workflow/stream_resume', transport: 'sse', framing: 'workflow', body: json(true), query: QUERY, usage: 'workflow', summary: 'Resume an interrupted workflow, streamed.' },
  { name: 'workflow.resume', method: 'POST', path: '/v1/workflows/resume', transport: 'http', body: json(true), query: QUERY, usage: 'workflow', summary: 'Resume an interrupted workflow.' },
  { name: 'workflow.chat', method: 'POST', path: '/v1/workflows/chat', transport: 'sse', framing: 'chat', body: json(true, ['ext.user_id']), query: QUERY, usage: 'chat', summary: 'Chat with a chatflow, streamed.' },
  { name: 'workflow.run_history', method: 'GET', path: '/v1/workflows/:workflow_id/run_histories/:execute_id', transport: 'http', body: NONE, query: QUERY, usage: 'history', tokenFree: true, summary: 'Read the result of a workflow run.' },
  { name: 'workflow.node_history', method: 'GET', path: '/v1/workflows/:workflow_id/run_histories/:execute_id/execute_nodes/:node_execute_uuid', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: 'Read the output of one node of a workflow run.' },
  { name: 'file.upload', method: 'POST', path: '/v1/files/upload', transport: 'http', body: STREAM, query: QUERY, tokenFree: true, summary: 'Upload a file (multipart, streamed, never buffered).' },
  { name: 'file.retrieve', method: 'GET', path: '/v1/files/retrieve', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: 'Read the metadata of a file.' },
  { name: 'audio.speech', method: 'POST', path: '/v1/audio/speech', transport: 'http', body: json(true), query: QUERY, summary: 'Text to speech.' },
  { name: 'audio.transcriptions', method: 'POST', path: '/v1/audio/transcriptions', transport: 'http', body: STREAM, query: QUERY, summary: 'Speech to text (multipart, streamed).' },
  { name: 'audio.voices', method: 'GET', path: '/v1/audio/voices', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: 'List the voices.' },
  { name: 'audio.rooms', method: 'POST', path: '/v1/audio/rooms', transport: 'http', body: json(true, ['uid']), query: QUERY, summary: 'Create a realtime (RTC) room.' },
  // The listener side of a simultaneous interpretation (audio.live.retrieve in JS, Python and Go).
  { name: 'audio.live', method: 'GET', path: '/v1/audio/live/:live_id', transport: 'http', body: NONE, query: QUERY, tokenFree: true, summary: 'Listen to a simultaneous interpretation.' },
  { name: 'variables.get', method: 'GET', path: '/v1/variables', transport: 'http', body: NONE, query: { ...QUERY, user: ['connector_uid'] }, tokenFree: true, summary: "Read the caller's variables." },
  { name: 'variables.update', method: 'PUT', path: '/v1/variables', transport: 'http', body: json(true, ['connector_uid']), query: QUERY, tokenFree: true, summary: "Write the caller's variables." },
  { name: 'bot.retrieve', method: 'GET', path: '/v1/bots/:bot_id', transport: 'http', body: NONE, query: QUERY, response: BOT_INFO, tokenFree: true, summary: "A bot's display information." },
  { name: 'bot.online_info', method: 'GET', path: '/v1/bot/get_online_info', transport: 'http', body: NONE, query: QUERY, response: BOT_INFO, tokenFree: true, summary: "A bot's display information (legacy)." },
  { name: 'ws.chat', method: 'GET', path: '/v1/chat', transport: 'websocket', body: NONE, query: QUERY, events: { 'chat.update': { user: ['data.chat_config.user_id'] } }, usage: 'chat', summary: 'Realtime voice chat.' },
  { name: 'ws.audio.speech', method: 'GET', path: '/v1/audio/speech', transport: 'websocket', body: NONE, query: { ...QUERY, entity: { type: 'entity_type', id: 'entity_id' } }, events: {}, summary: 'Realtime text to speech.' },
  { name: 'ws.audio.transcriptions', method: 'GET', path: '/v1/audio/transcriptions', transport: 'websocket', body: NONE, query: { ...QUERY, entity: { type: 'entity_type', id: 'entity_id' } }, events: {}, summary: 'Realtime speech to text.' },
  { name: 'ws.audio.simult_interpretation', method: 'GET', path: '/v1/audio/simult_interpretation', transport: 'websocket', body: NONE, query: QUERY, events: {}, summary: 'Realtime simultaneous interpretation.' },
] as const satisfies readonly Endpoint[];

export type EndpointName = (typeof ENDPOINTS)[number]['name'];

/** `POST /gateway/token` (token vending): answered by the gateway itself, when tokenVending.enabled. */
export const VENDING_ENDPOINT: Endpoint = {
  name: 'gateway.token',
  method: 'POST',
  path: '/gateway/token',
  transport: 'local',
  body: { kind: 'json', required: false, fields: {} },
  query: QUERY,
  summary: "The caller's own Coze token, for the Web Chat SDK (only when tokenVending.enabled).",
};

/** `GET /gateway/usage`: the caller's own usage and budgets, answered by the gateway itself (issue 18). */
export const USAGE_ENDPOINT: Endpoint = {
  name: 'gateway.usage',
  method: 'GET',
  path: '/gateway/usage',
  transport: 'local',
  body: NONE,
  query: QUERY,
  tokenFree: true,
  summary: "The caller's own usage and what is left of its budgets (docs/usage-and-budgets.md).",
};

/** The query policy of a route the gateway knows nothing about: the shared scope rules only. */
export const PASSTHROUGH_QUERY: FieldPolicy = QUERY;
