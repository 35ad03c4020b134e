import { GatewayError } from '../errors.js';

/**
 * Identity fields and id allowlists (SPEC section 5). With `enforceUserId`, every field that
 * names a Coze-side user is forced to the caller's session_name, so nobody can read or write
 * another user's memory or variables by naming them. `bot_id` and `workflow_id` are checked
 * against the allowlists wherever they appear: body, query or path.
 */
export interface BodyPolicyOptions {
  enforceUserId: boolean;
  allowedBotIds?: readonly string[] | undefined;
  allowedWorkflowIds?: readonly string[] | undefined;
}

type JsonObject = Record<string, unknown>;

/** Which identity field each route carries in its JSON body. */
const BODY_IDENTITY_FIELDS: Readonly<Record<string, readonly string[]>> = {
  chat: ['user_id'],
  'workflow.run': ['ext.user_id'],
  'workflow.stream_run': ['ext.user_id'],
  'workflow.chat': ['ext.user_id'],
  'variables.update': ['connector_uid'],
  'audio.rooms': ['uid'],
};

/** Routes whose JSON body is read: identity fields, or ids checked against an allowlist. */
const BODY_ROUTES: ReadonlySet<string> = new Set([
  ...Object.keys(BODY_IDENTITY_FIELDS),
  'conversation.create',
  'workflow.stream_resume',
  'workflow.resume',
  'chat.submit_tool_outputs',
]);

const QUERY_IDENTITY_FIELDS: Readonly<Record<string, readonly string[]>> = {
  'variables.get': ['connector_uid'],
};

export interface BodyPolicy {
  /** True when this route's JSON body must be read before forwarding. */
  readsBody(route: string): boolean;
  /** Checks and rewrites the query and path parameters; returns the query string to forward. */
  applyToQuery(route: string, query: string, params: Readonly<Record<string, string>>, sessionName: string): string;
  /** Checks and rewrites a parsed JSON body in place. */
  applyToBody(route: string, body: unknown, sessionName: string): void;
  /** Checks ids sent outside the HTTP body (WebSocket `chat.update`), forcing the user id. */
  applyToChatUpdate(event: JsonObject, sessionName: string): void;
}

export function createBodyPolicy(options: BodyPolicyOptions): BodyPolicy {
  const bots = options.allowedBotIds?.length ? new Set(options.allowedBotIds) : undefined;
  const workflows = options.allowedWorkflowIds?.length ? new Set(options.allowedWorkflowIds) : undefined;

  function checkIds(source: { get(name: string): unknown }): void {
    const bot = source.get('bot_id');
    if (bots && bot !== undefined && !(typeof bot === 'string' && bots.has(bot))) throw new GatewayError('bot-forbidden');
    const workflow = source.get('workflow_id');
    if (workflows && workflow !== undefined && !(typeof workflow === 'string' && workflows.has(workflow))) {
      throw new GatewayError('workflow-forbidden');
    }
  }

  return {
    readsBody(route) {
      return BODY_ROUTES.has(route);
    },

    applyToQuery(route, query, params, sessionName) {
      const search = new URLSearchParams(query);
      // A repeated bot_id could pass the check with one value and reach Coze with the other.
      for (const name of ['bot_id', 'workflow_id', 'connector_uid']) {
        if (search.getAll(name).length > 1) throw new GatewayError('bad-request', { detail: `The query parameter ${name} is repeated.` });
      }
      checkIds({ get: (name) => params[name] ?? search.get(name) ?? undefined });
      const fields = options.enforceUserId ? QUERY_IDENTITY_FIELDS[route] : undefined;
      if (!fields) return query;
      for (const field of fields) search.set(field, sessionName);
      return search.toString();
    },

    applyToBody(route, body, sessionName) {
      if (!isObject(body)) throw new GatewayError('bad-json-body', { detail: 'Expected a JSON object.' });
      checkIds({ get: (name) => body[name] });
      const fields = options.enforceUserId ? BODY_IDENTITY_FIELDS[route] : undefined;
      for (const field of fields ?? []) setField(body, field, sessionName);
    },

    applyToChatUpdate(event, sessionName) {
      const data = event.data;
      if (!isObject(data)) return;
      if (options.enforceUserId) {
        const chatConfig = isObject(data.chat_config) ? data.chat_config : (data.chat_config = {});
        (chatConfig as JsonObject).user_id = sessionName;
      }
    },
  };
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Sets `a.b` on an object, creating `a` when it is absent and refusing a non-object `a`. */
function setField(body: JsonObject, path: string, value: string): void {
  const parts = path.split('.');
  let node = body;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (next === undefined || next === null) node[part] = {};
    else if (!isObject(next)) throw new GatewayError('bad-json-body', { detail: `The field ${part} must be an object.` });
    node = node[part] as JsonObject;
  }
  node[parts[parts.length - 1] as string] = value;
}
