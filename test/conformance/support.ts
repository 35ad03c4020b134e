import assert from 'node:assert/strict';
import { CozeAPI } from '@coze/api';
import { startStack, type Stack, type StackOptions } from '../helpers/stack.js';

/**
 * The SDK-surface conformance suite (issue 14): the official JS SDK, as a user would set it up
 * (baseURL and baseWsURL at the gateway, the user's own credential as token), against the
 * emulator, as two users. Bots and workflows are configured in the emulator the way they would
 * be in the Coze console.
 */
export const BOT = '7000000000000000001';
export const TOOL_BOT = '7000000000000000002';
export const FAILING_BOT = '7000000000000000003';
export const ERROR_BOT = '7000000000000000004';
export const WORKFLOW = '7100000000000000001';
export const INTERRUPT_WORKFLOW = '7100000000000000002';
export const ERROR_WORKFLOW = '7100000000000000003';
export const PING_WORKFLOW = '7100000000000000004';

export interface Conformance {
  stack: Stack;
  alice: CozeAPI;
  bob: CozeAPI;
  close(): Promise<void>;
}

export async function startConformance(options: StackOptions = {}): Promise<Conformance> {
  const stack = await startStack({
    ...options,
    emulator: {
      bots: { [TOOL_BOT]: 'tool', [FAILING_BOT]: 'fail', [ERROR_BOT]: 'error' },
      workflows: { [INTERRUPT_WORKFLOW]: 'interrupt', [ERROR_WORKFLOW]: 'error', [PING_WORKFLOW]: 'ping' },
      ...options.emulator,
    },
  });
  const client = async (subject: string) => {
    const jwt = await stack.callerToken(subject);
    // Both base URLs: baseWsURL defaults to wss://ws.coze.cn, which would get the credential (docs/sdk.md).
    return new CozeAPI({ baseURL: stack.url, baseWsURL: stack.url.replace(/^http/, 'ws'), token: async () => jwt });
  };
  return { stack, alice: await client('alice'), bob: await client('bob'), close: () => stack.close() };
}

/** The SDK refused with Coze's "not yours" (PermissionDeniedError, code 4101, a log id). */
export async function assertDenied(call: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(call, (err: { name?: string; code?: number; logid?: string; status?: number }) => {
    assert.equal(err.name, 'PermissionDeniedError', what);
    assert.equal(err.code, 4101, what);
    assert.ok(err.logid, `${what}: the SDK read Coze's log id`);
    return true;
  });
}

/** Collects an SDK stream (chat or workflow events). */
export async function collect<T>(stream: AsyncIterable<T> | Promise<AsyncIterable<T>>): Promise<T[]> {
  const events: T[] = [];
  for await (const event of await stream) events.push(event);
  return events;
}

/** The last request Coze saw on `path` (and method), with the session its token belonged to. */
export function lastSeen(stack: Stack, path: string, method?: string) {
  const seen = stack.emulator.requests.filter((r) => r.path === path && (!method || r.method === method)).at(-1);
  assert.ok(seen, `Coze saw ${method ?? ''} ${path}`);
  return seen;
}
