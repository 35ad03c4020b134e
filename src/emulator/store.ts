import { randomBytes } from 'node:crypto';

/** Who owns a resource: Coze isolates by app plus session_name (https://www.coze.cn/open/docs/developer_guides/session_isolation). */
export interface Owner {
  appId: string;
  sessionName: string;
}

export interface Message {
  id: string;
  conversation_id: string;
  role: string;
  type: string;
  content: string;
  content_type: string;
  chat_id?: string;
  created_at: number;
  /** What user_id the chat that produced it carried: tests read it to see what reached Coze. */
  user_id?: string;
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

export interface Chat {
  id: string;
  conversation_id: string;
  bot_id: string;
  user_id: string;
  status: string;
  owner: Owner;
  created_at: number;
  completed_at: number;
}

export interface StoredFile {
  id: string;
  owner: Owner;
  file_name: string;
  bytes: number;
  created_at: number;
}

/** Ids shaped like Coze's: long decimal strings. */
export function newId(): string {
  return `7${BigInt(`0x${randomBytes(7).toString('hex')}`).toString().padStart(17, '0').slice(0, 18)}`;
}

export function sameOwner(a: Owner, b: Owner): boolean {
  return a.appId === b.appId && a.sessionName === b.sessionName;
}

/** The emulator's memory: everything keyed so that one session can never see another's. */
export function createStore() {
  const conversations = new Map<string, Conversation>();
  const chats = new Map<string, Chat>();
  const files = new Map<string, StoredFile>();
  const variables = new Map<string, Map<string, string>>();

  return {
    conversations,
    chats,
    files,
    variablesFor(owner: Owner, botId: string, connectorUid: string): Map<string, string> {
      const key = JSON.stringify([owner.appId, owner.sessionName, botId, connectorUid]);
      let vars = variables.get(key);
      if (!vars) variables.set(key, (vars = new Map()));
      return vars;
    },
    createConversation(owner: Owner, botId: string, metaData: Record<string, string> = {}): Conversation {
      const conversation: Conversation = { id: newId(), bot_id: botId, owner, created_at: Math.floor(Date.now() / 1000), name: '', meta_data: metaData, messages: [] };
      conversations.set(conversation.id, conversation);
      return conversation;
    },
    clear(): void {
      conversations.clear();
      chats.clear();
      files.clear();
      variables.clear();
    },
  };
}

export type Store = ReturnType<typeof createStore>;
