import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../../../src/errors.js';
import { MAX_JSON_DEPTH, parseJsonObject } from '../../../src/policy/json-body.js';

const forced = (text: string, path: string, value = 'alice') => {
  const body = parseJsonObject(Buffer.from(text));
  body.force(path, value);
  return body.toBuffer().toString('utf8');
};

const refusal = (text: string | Buffer, detail?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof GatewayError, String(err));
  assert.equal(err.reason, 'bad-json-body');
  assert.equal(err.status, 400);
  if (detail) assert.match(err.message, detail, typeof text === 'string' ? text.slice(0, 40) : 'bytes');
  return true;
};

describe('json-body: lossless identity forcing', () => {
  it('lossless-body-rewrite: changes only the forced field; numbers, escapes, order and spacing keep their bytes', () => {
    const text =
      '{ "bot_id" : "7", "user_id":"bob",\n  "parameters": {"big": 9223372036854775808, "bigger": 12345678901234567890, "ratio": 1.0, "huge": 1e400, "neg": -0.0,' +
      ' "s": "caf\\u00e9 \\ud83d\\ude00 \\"q\\"", "deep": [[[{"x": 1.50}]]]}, "z": null }';
    assert.equal(
      forced(text, 'user_id'),
      text.replace('"user_id":"bob"', '"user_id":"alice"'),
    );
  });

  it('an untouched body is forwarded as the very same bytes', () => {
    const bytes = Buffer.from('{"a": 12345678901234567890,  "b":"\\u0041"}');
    const body = parseJsonObject(bytes);
    assert.equal(body.changed, false);
    assert.equal(body.toBuffer(), bytes);
  });

  it('adds a missing field after the last member, or inside an empty object, and builds missing parents', () => {
    assert.equal(forced('{"a":1.0}', 'user_id'), '{"a":1.0,"user_id":"alice"}');
    assert.equal(forced('{ }', 'user_id'), '{"user_id":"alice" }');
    assert.equal(forced('{"workflow_id":"w","parameters":{"n":1e2}}', 'ext.user_id'), '{"workflow_id":"w","parameters":{"n":1e2},"ext":{"user_id":"alice"}}');
    assert.equal(forced('{"ext":null}', 'ext.user_id'), '{"ext":{"user_id":"alice"}}');
    assert.equal(forced('{"ext":{"latitude":"1.0"}}', 'ext.user_id'), '{"ext":{"latitude":"1.0","user_id":"alice"}}');
  });

  it('forces every occurrence of a repeated key, and reaches the field through repeated parents', () => {
    assert.equal(forced('{"user_id":"bob","x":1,"user_id":"carol"}', 'user_id'), '{"user_id":"alice","x":1,"user_id":"alice"}');
    assert.equal(forced('{"ext":{"user_id":"bob"},"ext":{}}', 'ext.user_id'), '{"ext":{"user_id":"alice"},"ext":{"user_id":"alice"}}');
    // An escaped key is the same key to Coze's decoder.
    assert.equal(forced('{"user\\u005fid":"bob"}', 'user_id'), '{"user\\u005fid":"alice"}');
    // Any value type is replaced, not only strings.
    assert.equal(forced('{"user_id":{"$ne":1}}', 'user_id'), '{"user_id":"alice"}');
  });

  it('escapes the forced value as JSON', () => {
    assert.equal(forced('{}', 'user_id', 'a"b\\c\u0001'), '{"user_id":"a\\"b\\\\c\\u0001"}');
  });

  it('refuses a non-object parent, or replaces it when told to', () => {
    assert.throws(() => forced('{"ext":"x"}', 'ext.user_id'), refusal('', /The field ext must be an object/));
    assert.throws(() => forced('{"ext":[1]}', 'ext.user_id'), refusal('', /The field ext must be an object/));
    const body = parseJsonObject(Buffer.from('{"data":{"chat_config":"user_id=bob"}}'));
    body.force('data.chat_config.user_id', 'alice', { nonObjectParent: 'replace' });
    assert.equal(body.toBuffer().toString(), '{"data":{"chat_config":{"user_id":"alice"}}}');
  });

  it('reads every occurrence with its decoded key and, for numbers, the text as sent', () => {
    const body = parseJsonObject(Buffer.from('{"bot_id":"a","bot_id":12345678901234567890,"bot_\\u0069d":null,"ext":{"user_id":true}}'));
    assert.deepEqual(body.get('bot_id'), [
      { key: 'bot_id', kind: 'string', value: 'a' },
      { key: 'bot_id', kind: 'number', value: '12345678901234567890' },
      { key: 'bot_id', kind: 'null', value: undefined },
    ]);
    assert.deepEqual(body.get('ext.user_id'), [{ key: 'user_id', kind: 'boolean', value: true }]);
    assert.deepEqual(body.fields().map((f) => f.key), ['bot_id', 'bot_id', 'bot_id', 'ext']);
  });
});

describe('json-body: what is refused', () => {
  it('json-depth-limit-400: a deeply nested body is 400 bad-json-body, never a stack overflow', () => {
    for (const depth of [MAX_JSON_DEPTH + 1, 100_000]) {
      const text = `{"a":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
      assert.throws(() => parseJsonObject(Buffer.from(text)), refusal(text, /nested deeper than 256 levels/));
    }
    // Brackets inside strings do not count.
    const inString = `{"a":"${'['.repeat(10_000)}"}`;
    assert.equal(parseJsonObject(Buffer.from(inString)).get('a')[0]?.value, '['.repeat(10_000));
    // The limit itself is accepted.
    const atLimit = `{"a":${'['.repeat(MAX_JSON_DEPTH - 1)}${']'.repeat(MAX_JSON_DEPTH - 1)}}`;
    assert.equal(parseJsonObject(Buffer.from(atLimit)).get('a')[0]?.kind, 'array');
  });

  it('refuses what JSON.parse refuses: comments, trailing commas, trailing data, bad numbers and escapes', () => {
    for (const text of ['{"a":1,}', '{"a":1}/*c*/', '{"a":1} x', '{"a":01}', '{"a":1.}', '{"a":NaN}', "{'a':1}", '{"a":"\\q"}', '{"a":"x\ny"}', '{a:1}', '\ufeff{}', '']) {
      assert.throws(() => JSON.parse(text), SyntaxError, `JSON.parse agrees on ${JSON.stringify(text)}`);
      assert.throws(() => parseJsonObject(Buffer.from(text)), refusal(text));
    }
  });

  it('refuses a body that is not an object, and invalid UTF-8', () => {
    for (const text of ['[]', '"x"', '1', 'null']) assert.throws(() => parseJsonObject(Buffer.from(text)), refusal(text, /Expected a JSON object/));
    const invalid = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    assert.throws(() => parseJsonObject(invalid), refusal(invalid, /not valid UTF-8/));
  });
});
