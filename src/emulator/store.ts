import { randomBytes } from 'node:crypto';

/** Who owns a resource: Coze isolates by app plus session_name (https://www.coze.cn/open/docs/developer_guides/session_isolation). */
export interface Owner {
  appId: string;
  sessionName: string;
}

export interface Message {
  id: string;
  conversation_id: string;
  bot_id: string;
  role: string;
  type: string;
  content: string;
  content_type: string;
  chat_id?: string;
  meta_data: Record<string, string>;
  created_at: number;
  updated_at: number;
  /** A thumbs up or down left with the feedback API. */
  feedback?: { feedback_type: string; comment?: string };
}

export interface Conversation {
  id: string;
  bot_id: string;
  owner: Owner;
  created_at: number;
  name: string;
  meta_data: Record<string, string>;
  messages: Message[];
}

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface Chat {
  id: string;
  conversation_id: string;
  bot_id: string;
  user_id: string;
  status: 'created' | 'in_progress' | 'completed' | 'failed' | 'requires_action' | 'canceled';
  owner: Owner;
  created_at: number;
  completed_at?: number;
  failed_at?: number;
  last_error: { code: number; msg: string };
  usage: { token_count: number; output_count: number; input_count: number };
  required_action?: { type: 'submit_tool_outputs'; submit_tool_outputs: { tool_calls: ToolCall[] } };
  /** The question the chat answers. */
  question: string;
  /** Retrieves left before a non-streaming chat finishes (Coze answers `in_progress` first). */
  retrievesLeft: number;
  /** Tool outputs submitted without streaming: the answer the chat gives once it finishes. */
  toolAnswer?: string;
}

export interface StoredFile {
  id: string;
  owner: Owner;
  file_name: string;
  bytes: number;
  created_at: number;
}

/** One workflow run (sync, async or streamed), for the run history APIs. */
export interface WorkflowExecution {
  execute_id: string;
  workflow_id: string;
  owner: Owner;
  bot_id: string;
  connector_uid: string;
  run_mode: 0 | 1 | 2;
  status: 'Success' | 'Running' | 'Fail';
  output: string;
  create_time: number;
  update_time: number;
  usage: { token_count: number; output_count: number; input_count: number };
  /** node_execute_uuid -> the output of that node. */
  nodes: Map<string, string>;
}

/** A streamed workflow waiting at a question node for stream_resume. */
export interface WorkflowInterrupt {
  event_id: string;
  workflow_id: string;
  execute_id: string;
  type: number;
  owner: Owner;
}

/** Ids shaped like Coze's: long decimal strings. */
export function newId(): string {
  return `7${BigInt(`0x${randomBytes(7).toString('hex')}`).toString().padStart(17, '0').slice(0, 18)}`;
}

export function sameOwner(a: Owner, b: Owner): boolean {
  return a.appId === b.appId && a.sessionName === b.sessionName;
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** The emulator's memory: everything keyed so that one session can never see another's. */
export function createStore() {
  const conversations = new Map<string, Conversation>();
  const chats = new Map<string, Chat>();
  const files = new Map<string, StoredFile>();
  const variables = new Map<string, Map<string, string>>();
  const executions = new Map<string, WorkflowExecution>();
  const interrupts = new Map<string, WorkflowInterrupt>();

  return {
    conversations,
    chats,
    files,
    executions,
    interrupts,
    variablesFor(owner: Owner, botId: string, connectorUid: string): Map<string, string> {
      const key = JSON.stringify([owner.appId, owner.sessionName, botId, connectorUid]);
      let vars = variables.get(key);
      if (!vars) variables.set(key, (vars = new Map()));
      return vars;
    },
    createConversation(owner: Owner, botId: string, metaData: Record<string, string> = {}): Conversation {
      const conversation: Conversation = { id: newId(), bot_id: botId, owner, created_at: nowSeconds(), name: '', meta_data: metaData, messages: [] };
      conversations.set(conversation.id, conversation);
      return conversation;
    },
    clear(): void {
      conversations.clear();
      chats.clear();
      files.clear();
      variables.clear();
      executions.clear();
      interrupts.clear();
    },
  };
}

export type Store = ReturnType<typeof createStore>;
