/**
 * The stream readers of the official Python, Go, Java and JS SDKs, restated in TypeScript from
 * their public source (the commits read: coze-py 6b0f4cdf, coze-go f47b4f25, coze-java 26b79da6, coze-js cabc1ec9). Each reads a whole
 * response body the way that SDK reads its socket, and reports what the SDK's user gets: the
 * events handed over, in order, and how the iteration ended (normally, or with the error the SDK
 * raises). They keep each SDK's quirks, because the quirks are what the gateway must satisfy.
 */
export interface SdkEvent {
  /** Workflow events: the id the SDK parsed. */
  id?: number;
  event: string;
  /** The payload as the SDK typed it (parsed JSON, or a string). */
  data: unknown;
}

export type Outcome = { kind: 'end' } | { kind: 'error'; message: string };

export interface ParsedStream {
  events: SdkEvent[];
  outcome: Outcome;
}

export interface SdkStreamReader {
  readonly sdk: 'python' | 'go' | 'java' | 'js';
  /** `/v3/chat`, `submit_tool_outputs`, `/v1/workflows/chat`. */
  chat(body: Buffer): ParsedStream;
  /** `/v1/workflow/stream_run`, `stream_resume`. */
  workflow(body: Buffer): ParsedStream;
}

/** A JSON object, or an error naming what the SDK's decoder would say. */
export function jsonObject(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${what}: invalid JSON: ${text.slice(0, 80)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what}: not a JSON object`);
  return value as Record<string, unknown>;
}

/** Checks declared field types the way a typed decoder does (missing fields allowed when optional). */
export function checkFields(object: Record<string, unknown>, fields: Record<string, 'string' | 'number' | 'boolean' | 'object' | 'integer'>, required: readonly string[], what: string): void {
  for (const [name, type] of Object.entries(fields)) {
    const value = object[name];
    if (value === undefined || value === null) {
      if (required.includes(name)) throw new Error(`${what}: ${name} is required`);
      continue;
    }
    const ok = type === 'integer' ? Number.isInteger(value) : type === 'object' ? typeof value === 'object' : typeof value === type;
    if (!ok) throw new Error(`${what}: ${name} must be ${type}, got ${JSON.stringify(value)}`);
  }
}

export function run(read: () => SdkEvent[], events: SdkEvent[]): ParsedStream {
  try {
    read();
    return { events, outcome: { kind: 'end' } };
  } catch (err) {
    return { events, outcome: { kind: 'error', message: err instanceof Error ? err.message : String(err) } };
  }
}
