import { LRUCache } from 'lru-cache';
import type { Totals } from './usage-counter.js';
import type { Endpoint } from '../policy/endpoints.js';
import { createJsonFieldScanner, type ScannedFields } from './usage-scan.js';

/**
 * Reads the usage Coze reports, in the shape the endpoint table names (src/policy/endpoints.ts
 * `usage`; Coze's chat_v3, retrieve_chat, workflow_run, workflow_stream_run and workflow_history
 * pages, and coze-js websockets/types.ts for the realtime chat events):
 * - `chat`: a Chat object with `usage {token_count, output_count, input_count}`: the `data` of a
 *   JSON answer, the data of `conversation.chat.completed` / `failed` in chat-framed SSE, or of
 *   the same events on the realtime socket. Counted once it has ended (a chat in progress or
 *   waiting for tool outputs reports more later), once per chat id.
 * - `workflow`: a run's top-level `usage` (workflow/run, workflows/resume), or the `usage` of
 *   its stream's Message events (the call's total so far: the largest one is counted when the
 *   stream ends).
 * - `history`: the run history of an execution; only an async run's (run_mode 2) is counted,
 *   once it has ended, once per execute_id: a sync or streamed run was counted as it ran.
 * Where Coze's framing is not documented the parse is defensive: anything that is not a usage
 * object counts nothing, and nothing here can fail the relay.
 *
 * With `onOpenChat`, a chat seen to start but not to end is handed over to be followed up
 * (chat-follow-up.ts): a JSON Chat object still `created`, `in_progress` or `requires_action`, or
 * a chat stream that ended or was cut after `conversation.chat.created` / `in_progress` gave its
 * ids but before `conversation.chat.completed` / `failed`. Realtime sockets are not followed.
 */
const ENDED_CHAT = new Set(['completed', 'failed', 'canceled']);
/** A chat in these states has spent, or will spend, tokens its end reports. */
const OPEN_CHAT = new Set(['created', 'in_progress', 'requires_action']);
const CHAT_EVENTS: ReadonlySet<string> = new Set(['conversation.chat.completed', 'conversation.chat.failed']);
/** A chat stream's first events give the ids a follow-up needs: one small parse per chat. */
const CHAT_START_EVENTS: ReadonlySet<string> = new Set(['conversation.chat.created', 'conversation.chat.in_progress']);
const CHAT_FOLLOW_EVENTS: ReadonlySet<string> = new Set([...CHAT_EVENTS, ...CHAT_START_EVENTS]);
// Message events carry the usage; Done is read too, in case a run reports its total there.
const WORKFLOW_EVENTS: ReadonlySet<string> = new Set(['message', 'done']);
/** Bytes of a realtime frame that can only be a chat's last event. */
const WS_MARKERS = [Buffer.from('conversation.chat.completed'), Buffer.from('conversation.chat.failed')];

export type TokenCounts = Pick<Totals, 'input' | 'output' | 'total'>;

/** A chat that started in an answer that did not show its end: what a follow-up needs to retrieve it. */
export interface OpenChat {
  /** The route that started it; its tokens are counted under it. */
  readonly route: string;
  readonly sessionName: string;
  /** The token cache key the proxy used for it (src/coze/mint-request.ts). */
  readonly tokenKey: string;
  readonly chatId: string;
  readonly conversationId: string;
}

export interface UsageObservers {
  /** A watcher for one answer or socket of `endpoint`; undefined for endpoints that report no usage. */
  watch(endpoint: Pick<Endpoint, 'name' | 'usage'>, sessionName: string, tokenKey?: string): RequestUsage | undefined;
  /**
   * A Chat object the gateway retrieved itself: counted as a client's retrieve of it would be
   * (once per chat id). `abandoned` counts what a chat still waiting for tool outputs has spent
   * so far, without settling its id: should it end after all, its end counts the rest. False
   * when it was not counted now: still running, or counted before.
   */
  countChat(chat: OpenChat, data: unknown, abandoned?: boolean): boolean;
}

/** One answer (or one socket) being watched for usage. */
export interface RequestUsage {
  /** For the SSE observer: the events whose data lines it hands over, lower-cased. */
  readonly sse: { events: ReadonlySet<string>; onData(event: string, data: string): void; onLongData(event: string, fields: ScannedFields): void };
  /** A non-SSE body's bytes as they pass; `complete` when this is the whole (small) body. */
  onBody(chunk: Buffer, complete: boolean): void;
  /** A realtime downlink frame (server to client). */
  onFrame(frame: Buffer): void;
  /** The answer ended or was cut: counts what a stream reported. Idempotent. */
  end(): void;
  /** The tokens counted for this request, for its log line; undefined when none were reported. */
  readonly counted: TokenCounts | undefined;
}

/** Coze's usage object as counts, or undefined when it is not one. */
export function readUsage(value: unknown): TokenCounts | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const u = value as Record<string, unknown>;
  const count = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);
  const input = count(u.input_count);
  const output = count(u.output_count);
  const total = count(u.token_count) ?? (input !== undefined || output !== undefined ? (input ?? 0) + (output ?? 0) : undefined);
  if (total === undefined) return undefined;
  return { input: input ?? 0, output: output ?? 0, total };
}

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};
const field = (value: unknown, name: string): unknown => (typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined);

/**
 * Makes the per-request watchers. `onCount` receives each report once (the counter and the
 * metrics hang there). Ids already counted are remembered (bounded) on this replica, so a chat
 * polled to its end and then retrieved again, or streamed and then retrieved, counts once; the
 * report's id goes with it, for the replicas to agree on it too (usage-service.ts).
 */
export function createUsageObservers(options: {
  onCount(route: string, sessionName: string, counts: TokenCounts, id: string | undefined): void;
  /** A chat seen to start but not to end (absent: chats are not followed up). */
  onOpenChat?(chat: OpenChat): void;
  maxRememberedIds?: number;
}): UsageObservers {
  const seen = new LRUCache<string, true>({ max: options.maxRememberedIds ?? 100_000 });
  const firstTime = (id: string | undefined) => {
    if (id === undefined) return true;
    if (seen.has(id)) return false;
    seen.set(id, true);
    return true;
  };
  const onOpenChat = options.onOpenChat;
  const chatEvents = onOpenChat ? CHAT_FOLLOW_EVENTS : CHAT_EVENTS;
  const chatId = (obj: unknown) => {
    const id = field(obj, 'id');
    return typeof id === 'string' ? `chat:${id}` : undefined;
  };
  // What chats given up while waiting for tool outputs were counted for, by chat id: Coze
  // reports one running total, so such a chat's end counts only what came after.
  const abandonedCounts = new LRUCache<string, TokenCounts>({ max: options.maxRememberedIds ?? 100_000 });
  const countChat = (route: string, sessionName: string, obj: unknown, ended: boolean, counted?: (counts: TokenCounts) => void, abandoned = false): boolean => {
    const status = field(obj, 'status');
    if (!ended && !abandoned && !(typeof status === 'string' && ENDED_CHAT.has(status))) return false;
    let counts = readUsage(field(obj, 'usage'));
    const id = chatId(obj);
    if (abandoned) {
      if (!counts || id === undefined || !firstTime(`${id}:abandoned`)) return false;
      abandonedCounts.set(id, counts);
      options.onCount(route, sessionName, counts, `${id}:abandoned`);
      return true;
    }
    if (!counts || !firstTime(id)) return false;
    const before = id === undefined ? undefined : abandonedCounts.get(id);
    if (before) {
      const rest = (a: number, b: number) => Math.max(0, a - b);
      counts = { input: rest(counts.input, before.input), output: rest(counts.output, before.output), total: rest(counts.total, before.total) };
    }
    counted?.(counts);
    options.onCount(route, sessionName, counts, id);
    return true;
  };
  /** Hands a chat still running over to be followed up, unless this replica has counted it. */
  const follow = (route: string, sessionName: string, tokenKey: string, obj: unknown) => {
    const id = field(obj, 'id');
    const conversationId = field(obj, 'conversation_id');
    if (!onOpenChat || typeof id !== 'string' || typeof conversationId !== 'string' || seen.has(`chat:${id}`)) return;
    onOpenChat({ route, sessionName, tokenKey, chatId: id, conversationId });
  };

  function watch(endpoint: Pick<Endpoint, 'name' | 'usage'>, sessionName: string, tokenKey = sessionName): RequestUsage | undefined {
    const shape = endpoint.usage;
    if (!shape) return undefined;
    const route = endpoint.name;
    let best: TokenCounts | undefined;
    let ended = false;
    let scanner: ReturnType<typeof createJsonFieldScanner> | undefined;
    let scanned = false;
    // A chat stream's chat, from its start events, until an end event says it ended.
    let started: unknown;

    const add = (counts: TokenCounts) => {
      const counted = request.counted;
      request.counted = counted ? { input: counted.input + counts.input, output: counted.output + counts.output, total: counted.total + counts.total } : counts;
    };
    const count = (counts: TokenCounts | undefined, id: string | undefined) => {
      if (!counts || !firstTime(id)) return;
      add(counts);
      options.onCount(route, sessionName, counts, id);
    };
    // endedByEvent: the event itself says the chat has ended, whatever its data holds.
    const chat = (obj: unknown, endedByEvent = false) => {
      if (countChat(route, sessionName, obj, endedByEvent, add) || endedByEvent) return;
      const status = field(obj, 'status');
      if (typeof status === 'string' && OPEN_CHAT.has(status)) follow(route, sessionName, tokenKey, obj);
    };
    const execution = (obj: unknown) => {
      const id = field(obj, 'execute_id');
      const status = field(obj, 'execute_status');
      if (field(obj, 'run_mode') === 2 && (status === 'Success' || status === 'Fail')) count(readUsage(field(obj, 'usage')), typeof id === 'string' ? `exec:${id}` : undefined);
    };
    const keepBest = (usage: TokenCounts | undefined) => {
      if (usage && (!best || usage.total >= best.total)) best = usage;
    };
    const answer = (body: unknown) => {
      if (shape === 'chat') chat(field(body, 'data'));
      else if (shape === 'workflow') count(readUsage(field(body, 'usage')), undefined);
      else {
        const data = field(body, 'data');
        if (Array.isArray(data)) for (const run of data) execution(run);
      }
    };

    // A plain field, not a getter: V8 builds an object literal holding a getter through a slow
    // runtime path, ~12 µs per request (bench/README.md).
    const request: { -readonly [K in keyof RequestUsage]: RequestUsage[K] } = {
      counted: undefined,
      sse: {
        events: shape === 'workflow' ? WORKFLOW_EVENTS : chatEvents,
        onData(event, data) {
          if (shape === 'chat') {
            if (CHAT_EVENTS.has(event)) {
              started = undefined;
              chat(parse(data), true);
            } else if (CHAT_START_EVENTS.has(event)) started = parse(data);
            return;
          }
          // Message events stream every delta; only the ones that carry usage are parsed.
          if (!data.includes('"usage"')) return;
          keepBest(readUsage(field(parse(data), 'usage')));
        },
        // A data line too long to hold, scanned as it passed (usage-scan.ts).
        onLongData(event, fields) {
          if (shape === 'chat') {
            if (CHAT_EVENTS.has(event)) {
              started = undefined;
              chat(fields, true);
            } else if (CHAT_START_EVENTS.has(event)) started = fields;
            return;
          }
          keepBest(readUsage(fields.usage));
        },
      },
      onBody(chunk, complete) {
        if (complete) {
          // Most answers have no usage at all: a byte search saves their parse. A chat's answer
          // without usage is read when chats are followed up: it may be one still running.
          if (chunk.includes('"usage"') || (shape === 'chat' && onOpenChat && chunk.includes('"conversation_id"'))) answer(parse(chunk.toString('utf8')));
          return;
        }
        // A chat's own id and status are members of `data`; its tool calls carry ids of their own.
        scanner ??= createJsonFieldScanner(shape === 'chat' ? { depth: 2 } : {});
        scanner.push(chunk);
        scanned = true;
      },
      onFrame(frame) {
        if (!WS_MARKERS.some((m) => frame.includes(m))) return;
        const event = parse(frame.toString('utf8'));
        const type = field(event, 'event_type');
        if (typeof type === 'string' && CHAT_EVENTS.has(type)) chat(field(event, 'data'), true);
      },
      end() {
        if (ended) return;
        ended = true;
        if (best) count(best, undefined);
        // A chat stream that ended or was cut before its chat did: its end is never relayed.
        if (started !== undefined) follow(route, sessionName, tokenKey, started);
        if (scanned && scanner) {
          const f = scanner.fields;
          if (shape === 'workflow') count(readUsage(f.usage), undefined);
          else if (shape === 'history') execution(f);
          // Held to the small answer's rules: an ended chat, once per chat id.
          else chat(f);
        }
      },
    };
    return request;
  }

  return { watch, countChat: (open, data, abandoned = false) => countChat(open.route, open.sessionName, data, false, undefined, abandoned) };
}
