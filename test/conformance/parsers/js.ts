import { run, type SdkEvent, type SdkStreamReader } from './types.js';

/**
 * @coze/api 1.3.9 (coze-js cabc1ec9), restated for bodies captured from the gateway (the suite
 * also runs the real SDK: test/conformance/js-*.test.ts). coze-js `packages/coze-js/src/fetcher.ts` stream() splits on
 * \n, reads `field:value` with both sides trimmed into one object that is never reset, and yields
 * it on every `data:` line; a body that ends with an unterminated line yields that text as an
 * `error` event. `resources/chat/chat.ts`: `done` becomes '[DONE]', anything else is JSON.parse'd
 * ("Could not parse message into JSON" otherwise). `resources/workflows/runs/runs.ts`: Done has no
 * payload, anything else is JSON.parse'd, and the id is Number() of the last `id:` seen.
 */
export const js: SdkStreamReader = {
  sdk: 'js',
  chat: (body) => {
    const events: SdkEvent[] = [];
    return run(() => {
      for (const message of fetcherStream(body)) {
        if (message.event === 'done') {
          events.push({ event: 'done', data: '[DONE]' });
          continue;
        }
        events.push({ event: message.event ?? '', data: parse(message.data) });
      }
      return events;
    }, events);
  },
  workflow: (body) => {
    const events: SdkEvent[] = [];
    return run(() => {
      for (const message of fetcherStream(body)) {
        const id = Number(message.id);
        events.push(message.event === 'Done' ? { id, event: 'Done', data: undefined } : { id, event: message.event ?? '', data: parse(message.data) });
      }
      return events;
    }, events);
  },
};

function parse(data: string | undefined): unknown {
  try {
    return JSON.parse(data ?? '');
  } catch {
    throw new Error(`Could not parse message into JSON:${data}`);
  }
}

function* fetcherStream(body: Buffer): Generator<Record<string, string>> {
  const fieldValues: Record<string, string> = {};
  const lines = body.toString('utf8').split('\n');
  const rest = lines.pop() as string;
  for (const line of lines) {
    const index = line.indexOf(':');
    if (index === -1) continue;
    const field = line.slice(0, index).trim();
    fieldValues[field] = line.slice(index + 1).trim();
    if (field === 'data') yield { ...fieldValues };
  }
  if (rest) yield { ...fieldValues, event: 'error', data: rest };
}
