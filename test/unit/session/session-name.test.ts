import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Identity } from '../../../src/auth/identity.js';
import { GatewayError } from '../../../src/errors.js';
import { createSessionNamer } from '../../../src/session/session-name.js';

const jwt = (subject: string, claims: Record<string, unknown> = {}): Identity => ({ subject, source: 'jwt', claims });
const secret = 'a-session-name-secret-of-32-bytes!!';

/** The refusal a caller gets: its reason and the detail naming the placeholder. */
function refusal(render: () => string): { reason: string; detail: string | undefined } {
  try {
    render();
  } catch (err) {
    assert.ok(err instanceof GatewayError, String(err));
    return { reason: err.reason, detail: err.detail };
  }
  assert.fail('expected a refusal');
}

describe('session-name-injective: two identities never render one session_name', () => {
  it('a value cannot forge the separator: tenant acme + ops:bob and tenant acme:ops + bob are two sessions', () => {
    const name = createSessionNamer({ template: '{claims.tenant}:{subject}', prefix: '' });
    assert.equal(name(jwt('ops:bob', { tenant: 'acme' })), 'acme:ops:bob');
    assert.equal(name(jwt('bob', { tenant: 'acme:ops' })), 'acme%3Aops:bob');
    // The escape character is escaped too, so a value cannot spell another value's escape.
    assert.equal(name(jwt('bob', { tenant: 'acme%3Aops' })), 'acme%253Aops:bob');
  });

  it('with HMAC, an array, an object, null, a boolean or a missing claim is refused, not hashed as ""', () => {
    const name = createSessionNamer({ template: '{claims.org}/{subject}', prefix: '', hmacSecret: secret });
    assert.equal(name(jwt('7', { org: 'a' })), createHmac('sha256', secret).update('a/7').digest('base64url'));
    assert.equal(name(jwt('7', { org: '' })), createHmac('sha256', secret).update('/7').digest('base64url'), 'an empty string is a value of its own');
    for (const [org, kind] of [[['a'], 'an array'], [{ id: 'b' }, 'an object'], [null, 'null'], [true, 'a boolean'], [undefined, 'missing']] as const) {
      const claims = org === undefined ? {} : { org };
      assert.deepEqual(refusal(() => name(jwt('7', claims))), { reason: 'bad-session-name', detail: `The caller's {claims.org} is ${kind}.` }, kind);
    }
  });

  it('the number 5 and the string "5" are not one session: numbers are refused', () => {
    const name = createSessionNamer({ template: '{claims.org}/{subject}', prefix: '', hmacSecret: secret });
    assert.equal(name(jwt('7', { org: '5' })), createHmac('sha256', secret).update('5/7').digest('base64url'));
    assert.deepEqual(refusal(() => name(jwt('7', { org: 5 }))), { reason: 'bad-session-name', detail: "The caller's {claims.org} is a number." });
    const plain = createSessionNamer({ template: '{claims.org}', prefix: '' });
    assert.equal(plain(jwt('7', { org: '5' })), '5');
    assert.equal(refusal(() => plain(jwt('7', { org: 5 }))).reason, 'bad-session-name');
  });

  it('a claim path reads own properties only: {claims.constructor.name} is missing, not "Object"', () => {
    const name = createSessionNamer({ template: '{claims.constructor.name}', prefix: '' });
    assert.equal(refusal(() => name(jwt('alice'))).detail, "The caller's {claims.constructor.name} is missing.");
    const nested = createSessionNamer({ template: '{claims.org.id}:{subject}', prefix: '' });
    assert.equal(nested(jwt('alice', { org: { id: 'acme' } })), 'acme:alice');
  });

  it('no two of 79,507 value triples over the separators and the escape character render alike', () => {
    const name = createSessionNamer({ template: 't-{claims.a}:{claims.b}/x{subject}!', prefix: 'p' });
    const alphabet = [':', '/', '%', '3', 'A', 'x'];
    const words = [''];
    for (const a of alphabet) words.push(a);
    for (const a of alphabet) for (const b of alphabet) words.push(a + b);
    const seen = new Map<string, string>();
    for (const a of words) {
      for (const b of words) {
        for (const s of words) {
          const rendered = name(jwt(s, { a, b }));
          const before = seen.get(rendered);
          assert.equal(before, undefined, `${JSON.stringify([a, b, s])} and ${before} both render ${rendered}`);
          seen.set(rendered, JSON.stringify([a, b, s]));
        }
      }
    }
    assert.equal(seen.size, 43 ** 3);
  });

  it('with HMAC, a lone surrogate is refused: UTF-8 would hash it as U+FFFD', () => {
    const name = createSessionNamer({ template: '{subject}', prefix: '', hmacSecret: secret });
    assert.equal(refusal(() => name(jwt('al\uD800ice'))).reason, 'bad-session-name');
    assert.equal(name(jwt('al\uFFFDice')), createHmac('sha256', secret).update('al\uFFFDice').digest('base64url'));
    assert.equal(name(jwt('\u{1F600}')), createHmac('sha256', secret).update('\u{1F600}').digest('base64url'), 'a surrogate pair is a character');
  });

  it('keeps every name of {subject} and {source}:{subject}: the last value is never escaped', () => {
    const plain = createSessionNamer({ template: '{subject}', prefix: 'prod-' });
    for (const subject of ['alice', 'ops:bob', '50%off', 'a%3Ab', 'auth0|1234', 'https://idp/u/1']) {
      assert.equal(plain(jwt(subject)), `prod-${subject}`);
      assert.equal(createSessionNamer({ template: '{source}:{subject}', prefix: '' })(jwt(subject)), `jwt:${subject}`);
      const hashed = createSessionNamer({ template: '{subject}', prefix: 'h-', hmacSecret: secret });
      assert.equal(hashed(jwt(subject)), `h-${createHmac('sha256', secret).update(subject).digest('base64url')}`);
    }
  });

  it('escaping counts toward the 128 characters; a name past them is refused', () => {
    const name = createSessionNamer({ template: '{claims.t}:{subject}', prefix: '' });
    assert.equal(name(jwt('b', { t: ':'.repeat(42) })).length, 128);
    assert.equal(refusal(() => name(jwt('bb', { t: ':'.repeat(42) }))).reason, 'bad-session-name');
  });

  it('custom_consumer follows the same rules with its own reason', () => {
    const consumer = createSessionNamer({ template: 'tenant-{claims.tenant}:{subject}', prefix: '', setting: 'coze.sessionContext.customConsumer', invalidReason: 'bad-custom-consumer' });
    assert.notEqual(consumer(jwt('ops:bob', { tenant: 'acme' })), consumer(jwt('bob', { tenant: 'acme:ops' })));
    assert.deepEqual(refusal(() => consumer(jwt('bob', { tenant: 7 }))), { reason: 'bad-custom-consumer', detail: "The caller's {claims.tenant} is a number." });
  });

  it('refuses a template whose placeholders could not be told apart, naming the setting', () => {
    assert.throws(
      () => createSessionNamer({ template: '{issuer}{subject}', prefix: '' }),
      new TypeError('session.template: {issuer} and {subject} have no text between them, so "ab"+"c" and "a"+"bc" would render alike; separate them, e.g. {issuer}:{subject}'),
    );
    assert.throws(
      () => createSessionNamer({ template: 'x-{claims.tenant}%{subject}', prefix: '', setting: 'coze.sessionContext.customConsumer' }),
      new TypeError('coze.sessionContext.customConsumer: the text between {claims.tenant} and {subject} may not start with "%", which escapes the values'),
    );
    for (const template of ['{subject}', '%{subject}%', '{issuer}/%{subject}', '{source}:{subject}', 'no placeholder']) {
      assert.doesNotThrow(() => createSessionNamer({ template, prefix: '' }), template);
    }
  });
});
