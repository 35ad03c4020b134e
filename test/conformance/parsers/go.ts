import { checkFields, jsonObject, run, type ParsedStream, type SdkEvent, type SdkStreamReader } from './types.js';

/**
 * coze-go (f47b4f25): `stream_reader.go` reads lines with bufio.Reader.ReadLine and skips empty
 * ones; each non-empty line goes to the event processor, which may read more lines itself with
 * ReadString('\n'). `chats.go` parseChatEvent acts on a line starting `event:` and takes the very
 * next line as its data (`data[5:]`, whatever that line is); an `error` event becomes the error
 * Recv returns. `workflows_runs.go` parseWorkflowEvent acts only on lines starting `id:`, then
 * takes the next line as the event and the one after as the data; other lines are skipped, and
 * Error is an ordinary event. A ReadString that meets the end of the body before a newline returns
 * io.EOF, which Recv's caller reads as a normal end. Slicing a line shorter than its prefix
 * panics (`data[5:]`). The user loop modelled is the examples': Recv until io.EOF or an error.
 */
export const go: SdkStreamReader = {
  sdk: 'go',
  chat: (body) =>
    processLines(body, 'event:', (line, reader, events) => {
      const event = line.slice(6).trim();
      const next = reader.readString();
      if (next === EOF || !next.endsWith('\n')) return false; // io.EOF: the caller sees a normal end
      const data = sliceFrom(next, 5).trim();
      if (event === 'done') {
        events.push({ event, data });
      } else if (event === 'error') {
        throw new Error(data);
      } else if (['conversation.message.delta', 'conversation.message.completed', 'conversation.audio.delta'].includes(event)) {
        const message = jsonObject(data, 'json: Message');
        checkFields(message, { id: 'string', conversation_id: 'string', bot_id: 'string', chat_id: 'string', role: 'string', type: 'string', content: 'string', content_type: 'string', created_at: 'integer', updated_at: 'integer', meta_data: 'object' }, [], 'json: Message');
        events.push({ event, data: message });
      } else if (event.startsWith('conversation.chat.')) {
        const chat = jsonObject(data, 'json: Chat');
        checkFields(chat, { id: 'string', conversation_id: 'string', bot_id: 'string', created_at: 'integer', completed_at: 'integer', failed_at: 'integer', status: 'string', last_error: 'object', usage: 'object', required_action: 'object' }, [], 'json: Chat');
        events.push({ event, data: chat });
      } else {
        events.push({ event, data: undefined });
      }
      return true;
    }),
  workflow: (body) =>
    processLines(body, 'id:', (line, reader, events) => {
      const idText = line.slice(3).trim();
      const eventLine = reader.readString();
      if (eventLine === EOF || !eventLine.endsWith('\n')) return false;
      const event = sliceFrom(eventLine, 6).trim();
      const dataLine = reader.readString();
      if (dataLine === EOF || !dataLine.endsWith('\n')) return false;
      const data = sliceFrom(dataLine, 5).trim();
      // strconv.Atoi's error is ignored: a bad id reads as 0.
      const id = /^[+-]?\d+$/.test(idText) ? Number.parseInt(idText, 10) : 0;
      if (event === 'Message') {
        const message = jsonObject(data, 'json: WorkflowEventMessage');
        checkFields(message, { content: 'string', node_title: 'string', node_seq_id: 'string', node_is_finish: 'boolean', ext: 'object' }, [], 'json: WorkflowEventMessage');
        events.push({ id, event, data: message });
      } else if (event === 'Error') {
        const error = jsonObject(data, 'json: WorkflowEventError');
        checkFields(error, { error_code: 'integer', error_message: 'string' }, [], 'json: WorkflowEventError');
        events.push({ id, event, data: error });
      } else if (event === 'Interrupt') {
        const interrupt = jsonObject(data, 'json: WorkflowEventInterrupt');
        checkFields(interrupt, { interrupt_data: 'object', node_title: 'string' }, [], 'json: WorkflowEventInterrupt');
        events.push({ id, event, data: interrupt });
      } else if (event === 'Done') {
        events.push({ id, event, data: jsonObject(data, 'json: WorkflowEventDebugURL') });
      } else {
        // PING and anything unknown: the event with no payload.
        events.push({ id, event, data: undefined });
      }
      return true;
    }),
};

type BufioReader = ReturnType<typeof bufioReader>;

/**
 * streamReader.processLines: non-empty lines go to the processor (here only those with its
 * prefix; it skips the others itself); `false` is an io.EOF it met, which ends the stream.
 */
function processLines(body: Buffer, prefix: string, processor: (line: string, reader: BufioReader, events: SdkEvent[]) => boolean): ParsedStream {
  const events: SdkEvent[] = [];
  return run(() => {
    const reader = bufioReader(body);
    for (;;) {
      const line = reader.readLine();
      if (line === EOF) return events;
      if (line.length === 0 || !line.startsWith(prefix)) continue;
      if (!processor(line, reader, events)) return events;
    }
  }, events);
}

const EOF = Symbol('io.EOF');

/** bufio.Reader's ReadLine and ReadString('\n') over a whole body. */
function bufioReader(body: Buffer) {
  const text = body.toString('utf8');
  let at = 0;
  return {
    /** The next line without its \n or \r\n; a last unterminated line is returned once; then EOF. */
    readLine(): string | typeof EOF {
      if (at >= text.length) return EOF;
      const end = text.indexOf('\n', at);
      const line = end === -1 ? text.slice(at) : text.slice(at, end);
      at = end === -1 ? text.length : end + 1;
      return line.endsWith('\r') && end !== -1 ? line.slice(0, -1) : line;
    },
    /** Up to and including the next \n; without one, what is left (an io.EOF for the caller). */
    readString(): string | typeof EOF {
      if (at >= text.length) return EOF;
      const end = text.indexOf('\n', at);
      const chunk = end === -1 ? text.slice(at) : text.slice(at, end + 1);
      at = end === -1 ? text.length : end + 1;
      return chunk;
    },
  };
}

/** Go's s[n:]: a panic when the string is shorter than n. */
function sliceFrom(s: string, n: number): string {
  if (s.length < n) throw new Error(`panic: runtime error: slice bounds out of range [${n}:${s.length}]`);
  return s.slice(n);
}
