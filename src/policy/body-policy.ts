import { GatewayError } from '../errors.js';
import { parseJsonObject, type JsonField } from './json-body.js';

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
  /**
   * Checks a JSON body and forces its identity fields; returns the bytes to forward, which differ
   * from `body` only in the forced fields (json-body.ts).
   */
  applyToBody(route: string, body: Buffer, sessionName: string): Buffer;
  /**
   * Forces the user id of a WebSocket `chat.update` event (the frame's bytes); returns the bytes to
   * forward, or undefined when the event cannot be checked and must not reach Coze.
   */
  applyToChatUpdate(frame: Buffer, sessionName: string): Buffer | undefined;
}

export function createBodyPolicy(options: BodyPolicyOptions): BodyPolicy {
  const bots = options.allowedBotIds?.length ? new Set(options.allowedBotIds) : undefined;
  const workflows = options.allowedWorkflowIds?.length ? new Set(options.allowedWorkflowIds) : undefined;

  /** Every value sent for an id must be allowed: a repeated key may be read either way upstream. */
  function checkIds(values: (name: string) => readonly unknown[]): void {
    if (bots && !values('bot_id').every((bot) => typeof bot === 'string' && bots.has(bot))) throw new GatewayError('bot-forbidden');
    if (workflows && !values('workflow_id').every((workflow) => typeof workflow === 'string' && workflows.has(workflow))) {
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
      checkIds((name) => (params[name] !== undefined ? [params[name]] : search.getAll(name)));
      const fields = options.enforceUserId ? QUERY_IDENTITY_FIELDS[route] : undefined;
      if (!fields) return query;
      for (const field of fields) search.set(field, sessionName);
      return search.toString();
    },

    applyToBody(route, bytes, sessionName) {
      const body = parseJsonObject(bytes);
      checkIds((name) => body.get(name).map(idValue));
      const fields = options.enforceUserId ? BODY_IDENTITY_FIELDS[route] : undefined;
      for (const field of fields ?? []) body.force(field, sessionName);
      return body.toBuffer();
    },

    applyToChatUpdate(frame, sessionName) {
      if (!options.enforceUserId) return frame;
      let event;
      try {
        event = parseJsonObject(frame);
      } catch {
        return undefined;
      }
      // Without a data object Coze keeps the session's defaults: nothing names another user.
      if (!event.get('data').some((data) => data.kind === 'object')) return frame;
      event.force('data.chat_config.user_id', sessionName, { nonObjectParent: 'replace' });
      return event.toBuffer();
    },
  };
}

/** An id as the allowlist sees it: only a string can match; numbers, null and objects cannot. */
function idValue(field: JsonField): unknown {
  return field.kind === 'string' ? field.value : { kind: field.kind };
}
