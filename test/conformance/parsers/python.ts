import { checkFields, jsonObject, run, type SdkEvent, type SdkStreamReader } from './types.js';

/**
 * cozepy 0.20.0 (coze-py 6b0f4cdf): `cozepy/model.py` Stream._extra_event reads lines from
 * httpx's iter_lines (split on \n, \r\n or \r; a last unterminated line is still a line), skips
 * blank ones, and builds one event from exactly as many non-blank lines as it has fields
 * (chat: event, data; workflow: id, event, data). A line that starts with no known field, or a
 * field seen twice, raises CozeInvalidEventError; running out of lines ends the iteration
 * silently. Handlers: `cozepy/chat/__init__.py` _chat_stream_handler (done: skipped; error:
 * raises; messages and chats: validated by pydantic) and `cozepy/workflows/runs/__init__.py`
 * _workflow_stream_handler (int(id); Done skipped; Message, Error, Interrupt validated; anything
 * else handed over as unknown).
 */
export const python: SdkStreamReader = {
  sdk: 'python',
  chat: (body) => {
    const events: SdkEvent[] = [];
    return run(() => {
      for (const fields of extraEvents(body, ['event', 'data'])) {
        const { event, data } = fields as { event: string; data: string };
        if (event === 'done') continue;
        if (event === 'error') throw new Error(`error event: ${data}`);
        if (['conversation.message.delta', 'conversation.message.completed', 'conversation.audio.delta'].includes(event)) {
          const message = jsonObject(data, 'Message');
          checkFields(message, { role: 'string', type: 'string', content: 'string', content_type: 'string', id: 'string', conversation_id: 'string', created_at: 'integer' }, ['role', 'content', 'content_type'], 'Message');
          events.push({ event, data: message });
        } else if (event.startsWith('conversation.chat.')) {
          const chat = jsonObject(data, 'Chat');
          checkFields(chat, { id: 'string', conversation_id: 'string', bot_id: 'string', created_at: 'integer', status: 'string', last_error: 'object', usage: 'object' }, ['id', 'conversation_id'], 'Chat');
          events.push({ event, data: chat });
        } else {
          events.push({ event: 'unknown', data: fields });
        }
      }
      return events;
    }, events);
  },
  workflow: (body) => {
    const events: SdkEvent[] = [];
    return run(() => {
      for (const fields of extraEvents(body, ['id', 'event', 'data'])) {
        const { id: rawId, event, data } = fields as { id: string; event: string; data: string };
        if (!/^[+-]?\d+$/.test(rawId.trim())) throw new Error(`ValueError: invalid literal for int(): '${rawId}'`);
        const id = Number.parseInt(rawId, 10);
        if (event === 'Done') continue;
        if (event === 'Message') {
          const message = jsonObject(data, 'WorkflowEventMessage');
          checkFields(message, { content: 'string', node_title: 'string', node_seq_id: 'string', node_is_finish: 'boolean', ext: 'object', usage: 'object' }, ['content', 'node_title', 'node_seq_id', 'node_is_finish'], 'WorkflowEventMessage');
          events.push({ id, event, data: message });
        } else if (event === 'Error') {
          const error = jsonObject(data, 'WorkflowEventError');
          checkFields(error, { error_code: 'integer', error_message: 'string' }, ['error_code', 'error_message'], 'WorkflowEventError');
          events.push({ id, event, data: error });
        } else if (event === 'Interrupt') {
          const interrupt = jsonObject(data, 'WorkflowEventInterrupt');
          checkFields(interrupt, { interrupt_data: 'object', node_title: 'string' }, ['interrupt_data', 'node_title'], 'WorkflowEventInterrupt');
          checkFields(interrupt.interrupt_data as Record<string, unknown>, { event_id: 'string', type: 'integer' }, ['event_id', 'type'], 'WorkflowEventInterruptData');
          events.push({ id, event, data: interrupt });
        } else {
          events.push({ id, event: 'unknown', data: fields });
        }
      }
      return events;
    }, events);
  },
};

/** Stream._extra_event, repeated until the lines run out. */
function* extraEvents(body: Buffer, fields: readonly string[]): Generator<Record<string, string>> {
  const lines = body.toString('utf8').split(/\r\n|\r|\n/);
  // iter_lines yields a last unterminated line, but not an empty one after the final newline.
  if (lines.at(-1) === '') lines.pop();
  let at = 0;
  for (;;) {
    const data: Record<string, string> = Object.fromEntries(fields.map((f) => [f, '']));
    let times = 0;
    while (times < fields.length) {
      if (at >= lines.length) return;
      const line = (lines[at++] as string).trim();
      if (line === '') continue;
      const field = fields.find((f) => line.startsWith(`${f}:`));
      if (field === undefined) throw new Error(`CozeInvalidEventError: invalid event, field: , line: ${line}`);
      if (data[field] !== '') throw new Error(`CozeInvalidEventError: invalid event, field: ${field}, line: ${line}`);
      data[field] = line.slice(field.length + 1).trim();
      times += 1;
    }
    yield data;
  }
}
