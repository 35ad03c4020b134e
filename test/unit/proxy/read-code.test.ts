import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readCode } from '../../../src/proxy/rewrite-response.js';

/** What JSON.parse says the top-level `code` is: the reference the byte check must agree with. */
function parsedCode(text: string): number | undefined {
  try {
    const value = JSON.parse(text) as { code?: unknown };
    return typeof value === 'object' && value !== null && typeof value.code === 'number' ? value.code : undefined;
  } catch {
    return undefined;
  }
}

const BODIES = [
  '{"code":0,"msg":"","data":{"bot_id":"bench","name":"Bench bot"},"detail":{"logid":"x"}}',
  '{"code":0}',
  '{"code":4100,"msg":"token invalid"}',
  '{"code":700012006,"msg":"access token expired"}',
  '{"code":0,"msg":"","code":4100}',
  '{"code":0,"msg":"","\\u0063ode":4100}',
  '{"code":0,"data":{"last_error":{"code":4100}}}',
  '{"msg":"","code":4101}',
  '{"code":0.5}',
  '{"code":"0"}',
  ' {"code":0,"msg":""}',
  '[1,2]',
  'not json',
  '',
];

describe('readCode: the byte-level check for "code":0', () => {
  for (const body of BODIES) {
    it(`read-code-agrees-with-json-parse: ${JSON.stringify(body)}`, () => {
      assert.equal(readCode(Buffer.from(body)), parsedCode(body));
    });
  }

  it('read-code-never-calls-json-parse-for-the-common-success', () => {
    const original = JSON.parse;
    let calls = 0;
    JSON.parse = ((...args: Parameters<typeof JSON.parse>) => {
      calls += 1;
      return original(...args) as unknown;
    }) as typeof JSON.parse;
    try {
      assert.equal(readCode(Buffer.from(BODIES[0] as string)), 0);
      assert.equal(calls, 0);
      assert.equal(readCode(Buffer.from('{"code":4100,"msg":""}')), 4100);
      assert.equal(calls, 1);
    } finally {
      JSON.parse = original;
    }
  });
});
