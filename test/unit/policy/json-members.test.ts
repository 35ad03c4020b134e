import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyEdits, parseTree, type Edit } from 'jsonc-parser';
import { GatewayError } from '../../../src/errors.js';
import { ENDPOINTS } from '../../../src/policy/endpoints.js';
import { createFieldRules } from '../../../src/policy/field-policy.js';
import { keepMembers, objectText, rootMembers } from '../../../src/policy/json-members.js';

const keep = (text: string, key: string, names: readonly string[]) => {
  const checked = objectText(Buffer.from(text));
  return keepMembers(checked, rootMembers(checked), key, new Set(names));
};

/**
 * The same reduction the way the gateway did it before (json-body.ts's lossless tree, from
 * jsonc-parser): the oracle. 'invalid' when the strict parser refuses the text.
 */
function throughTheTree(text: string, key: string, names: ReadonlySet<string>): string | undefined | 'invalid' {
  const errors: unknown[] = [];
  const root = parseTree(text, errors as never[], { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  if (!root || errors.length > 0 || root.type !== 'object') return 'invalid';
  const edits: Edit[] = [];
  for (const property of root.children ?? []) {
    const [name, value] = property.children ?? [];
    if (name?.value !== key || value?.type !== 'object') continue;
    const all = value.children ?? [];
    const kept = all.filter((m) => names.has(m.children?.[0]?.value as string));
    if (kept.length === all.length) continue;
    edits.push({ offset: value.offset, length: value.length, content: `{${kept.map((m) => text.slice(m.offset, m.offset + m.length)).join(',')}}` });
  }
  return edits.length === 0 ? undefined : applyEdits(text, edits);
}

function throughTheMembers(text: string, key: string, names: ReadonlySet<string>): string | undefined | 'invalid' {
  let checked: string;
  try {
    checked = objectText(Buffer.from(text, 'utf8'));
  } catch (err) {
    assert.ok(err instanceof GatewayError && err.reason === 'bad-json-body', String(err));
    return 'invalid';
  }
  return keepMembers(checked, rootMembers(checked), key, names);
}

/** A small deterministic PRNG (mulberry32), so a failing case can be replayed from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYS = ['data', 'code', 'bot_id', 'name', 'prompt_info', 'd\\u0061ta', 'bot\\u005fid', 'NAME', '{', '\\"q\\"', 'a\\\\b', ''];
const STRINGS = ['x', '}', ']', '{\\"a\\":1}', '\\"', '\\\\', '\\u00e9', 'é', '中文', '\\n', ', \\"k\\": 1'];
const NUMBERS = ['0', '-0', '1.0', '12345678901234567890', '1e400', '-2.5E-3', '0.0'];

function generate(rand: () => number, depth: number, object = false): string {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;
  const space = () => pick(['', '', '', ' ', '\n', ' \t ', '\r\n  ']);
  const roll = rand();
  if (!object && (depth > 3 || roll < 0.35)) return pick([...NUMBERS.map((n) => n), 'true', 'false', 'null', ...STRINGS.map((s) => `"${s}"`)]);
  if (!object && roll < 0.5) {
    const items = Array.from({ length: Math.floor(rand() * 4) }, () => `${space()}${generate(rand, depth + 1)}${space()}`);
    return `[${items.join(',')}${items.length === 0 ? space() : ''}]`;
  }
  const members = Array.from({ length: Math.floor(rand() * 6) }, () => `${space()}"${pick(KEYS)}"${space()}:${space()}${generate(rand, depth + 1)}${space()}`);
  return `{${members.join(',')}${members.length === 0 ? space() : ''}}`;
}

/** One byte-level change: most make the text invalid, some keep it valid in another shape. */
function mutate(rand: () => number, text: string): string {
  const at = Math.floor(rand() * (text.length + 1));
  const pick = ['', ',', '}', '{', '"', '\\', '/* */', ' ', '0', ':'][Math.floor(rand() * 10)] as string;
  return rand() < 0.5 ? text.slice(0, at) + pick + text.slice(at + 1) : text.slice(0, at) + pick + text.slice(at);
}

describe('json-members: display fields without a parse tree', () => {
  it('keeps the listed members of the object at a root key with their exact text, and nothing else', () => {
    assert.equal(
      keep('{"code":0,"data":{ "a" : 1.0, "secret":"x", "b":{"n":12345678901234567890}, "a2":[] },"detail":{}}', 'data', ['a', 'b', 'missing']),
      '{"code":0,"data":{"a" : 1.0,"b":{"n":12345678901234567890}},"detail":{}}',
    );
    assert.equal(keep('{"data":{"a":1}}', 'data', ['a']), undefined, 'nothing to drop');
    assert.equal(keep('{"data":"not an object"}', 'data', ['a']), undefined);
    assert.equal(keep('{"data":{}}', 'data', ['a']), undefined);
    assert.equal(keep('{"data":{"secret":1}}', 'data', ['a']), '{"data":{}}');
  });

  it('sees repeated and escaped keys, and brackets and quotes inside strings, as a decoder does', () => {
    assert.equal(keep('{"data":{"a":1,"s":1},"data":{"s":"}","a":"{\\"s\\":1}"}}', 'data', ['a']), '{"data":{"a":1},"data":{"a":"{\\"s\\":1}"}}');
    assert.equal(keep('{"d\\u0061ta":{"a":1,"s\\u0065cret":2}}', 'data', ['a']), '{"d\\u0061ta":{"a":1}}');
    assert.equal(keep('{"data":{"\\u0061":1,"b":2}}', 'data', ['a']), '{"data":{"\\u0061":1}}');
    assert.equal(keep(' \n{ "x" : "\\\\" , "data" : { "a" : [ "]" , { } ] , "b" : "\\\\\\"" } } \n', 'data', ['a']), ' \n{ "x" : "\\\\" , "data" : {"a" : [ "]" , { } ]} } \n');
  });

  it('refuses what the strict parser refuses: not UTF-8, not an object, not JSON', () => {
    const refused = (bytes: Buffer | string) =>
      assert.throws(
        () => objectText(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes)),
        (err: unknown) => err instanceof GatewayError && err.reason === 'bad-json-body',
        String(bytes).slice(0, 40),
      );
    refused(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]));
    for (const text of ['', '[]', '"x"', 'null', '{"a":1}x', '{"a":1,}', '{"a":1 /* c */}', "{'a':1}", '{"a":01}', '\ufeff{}']) refused(text);
  });

  it('reads an answer nested 100,000 levels deep without a stack overflow (no recursion anywhere)', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    assert.equal(keep(`{"data":{"a":${deep},"secret":{"b":${deep}}},"code":0}`, 'data', ['a']), `{"data":{"a":${deep}},"code":0}`);
  });

  it('agrees with the lossless tree byte for byte on 3,000 generated answers and 3,000 broken ones', () => {
    const names = new Set(['bot_id', 'name', 'a\\b', '{']);
    let valid = 0;
    let changed = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const rand = random(seed);
      // Half the answers are any object; half hold a `data` object among other members.
      const text = rand() < 0.5 ? `${rand() < 0.2 ? ' ' : ''}${generate(rand, 0, true)}` : `{"code":0,${rand() < 0.5 ? '"x":[],' : ''}"data": ${generate(rand, 1, true)}${rand() < 0.2 ? `,"data":${generate(rand, 1, true)}` : ''}}`;
      const tree = throughTheTree(text, 'data', names);
      assert.deepEqual(throughTheMembers(text, 'data', names), tree, `seed ${seed}: ${text}`);
      if (tree !== 'invalid') valid += 1;
      if (typeof tree === 'string' && tree !== 'invalid') changed += 1;
      const broken = mutate(rand, text);
      assert.deepEqual(throughTheMembers(broken, 'data', names), throughTheTree(broken, 'data', names), `seed ${seed} (mutated): ${broken}`);
    }
    // The generator reaches the cases that matter: valid answers, most of them reduced.
    assert.ok(valid === 3000, `${valid} valid`);
    assert.ok(changed > 1000, `${changed} reduced`);
  });

  it('the bot info rule reads the first code as the tree does, and a code that is not the number 0 passes untouched', () => {
    const filter = createFieldRules(ENDPOINTS.find((e) => e.name === 'bot.retrieve') as (typeof ENDPOINTS)[number], { enforceUserId: true, allowDrafts: false, botInfo: 'display' }).filterResponse as (b: Buffer) => Buffer;
    const reduced = (code: string) => filter(Buffer.from(`{"code":${code},"data":{"name":"n","prompt_info":{}}}`)).toString();
    for (const zero of ['0', '-0', '0.0', '0e5']) assert.equal(reduced(zero), `{"code":${zero},"data":{"name":"n"}}`, zero);
    for (const other of ['"0"', '4200', 'null', 'false', '[]']) assert.equal(reduced(other), `{"code":${other},"data":{"name":"n","prompt_info":{}}}`, other);
    assert.equal(reduced('0,"code":4200'), '{"code":0,"code":4200,"data":{"name":"n"}}');
    assert.equal(filter(Buffer.from('{"data":{"name":"n","model_info":1}}')).toString(), '{"data":{"name":"n"}}', 'no code at all: filtered');
  });
});
