import { jsonObject, run, type ParsedStream, type SdkEvent, type SdkStreamReader } from './types.js';

/**
 * coze-java 0.4.2 (26b79da6): `service/service/common/AbstractEventCallback.java` reads lines with
 * BufferedReader.readLine (\n, \r or \r\n; a last unterminated line is still a line) and hands
 * each to processLine until it returns true; anything thrown fails the Flowable. `ChatEventCallback`
 * acts on `event:` lines and reads the next line as data (`readLine().substring(5)`: a missing
 * line is a NullPointerException, a short one a StringIndexOutOfBoundsException);
 * `ChatEvent.parseEvent` throws CozeApiException on `error` and ends on `done`.
 * `workflow/EventCallback` acts only on `id:` lines, reads the event and data lines after it, and
 * `WorkflowEvent.parseEvent` does Integer.parseInt(id); Message, Interrupt, Error and Done are
 * typed, anything else (PING) is read as a Message. Jackson ignores unknown fields and coerces
 * scalars, so only malformed JSON fails.
 */
export const java: SdkStreamReader = {
  sdk: 'java',
  chat: (body) =>
    onResponse(body, (line, reader, events) => {
      if (!line.startsWith('event:')) return false;
      const event = line.slice(6).trim();
      const data = substring(reader.readLine(), 5).trim();
      if (event === 'done') {
        events.push({ event, data: undefined });
        return true;
      }
      if (event === 'error') throw new Error(`CozeApiException: code: 0, msg: ${data}`);
      const typed = ['conversation.message.delta', 'conversation.message.completed', 'conversation.audio.delta'].includes(event) || event.startsWith('conversation.chat.');
      events.push({ event, data: typed ? jsonObject(data, 'Failed to parse object from JSON string') : undefined });
      return false;
    }),
  workflow: (body) =>
    onResponse(body, (line, reader, events) => {
      if (!line.startsWith('id:')) return false;
      const idText = line.slice(3).trim();
      const event = substring(reader.readLine(), 6).trim();
      const data = substring(reader.readLine(), 5).trim();
      if (!/^[+-]?\d+$/.test(idText)) throw new Error(`NumberFormatException: For input string: "${idText}"`);
      events.push({ id: Number.parseInt(idText, 10), event, data: jsonObject(data, 'Failed to parse object from JSON string') });
      return event === 'Done';
    }),
};

type LineReader = ReturnType<typeof bufferedReader>;

/** AbstractEventCallback.onResponse: every line to processLine until it returns true. */
function onResponse(body: Buffer, processLine: (line: string, reader: LineReader, events: SdkEvent[]) => boolean): ParsedStream {
  const events: SdkEvent[] = [];
  return run(() => {
    const reader = bufferedReader(body);
    for (let line = reader.readLine(); line !== null; line = reader.readLine()) {
      if (processLine(line, reader, events)) break;
    }
    return events;
  }, events);
}

/** BufferedReader.readLine over a whole body; null at the end. */
function bufferedReader(body: Buffer) {
  const lines = body.toString('utf8').split(/\r\n|\r|\n/);
  if (lines.at(-1) === '') lines.pop();
  let at = 0;
  return { readLine: (): string | null => (at < lines.length ? (lines[at++] as string) : null) };
}

/** Java's String.substring on a line readLine may have returned as null. */
function substring(line: string | null, from: number): string {
  if (line === null) throw new Error('NullPointerException: the stream ended inside an event');
  if (line.length < from) throw new Error(`StringIndexOutOfBoundsException: begin ${from}, end ${line.length}`);
  return line.slice(from);
}
