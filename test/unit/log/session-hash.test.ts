import assert from 'node:assert/strict';
import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { createSessionHasher, sessionHashKey } from '../../../src/log/logger.js';

const pkcs8 = (key: ReturnType<typeof generateKeyPairSync>['privateKey']) => key.export({ type: 'pkcs8', format: 'pem' }).toString();
const plain = (name: string) => createHash('sha256').update(name).digest('base64url').slice(0, 12);

describe('session pseudonyms in logs', () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

  it('session-hash-key-from-the-coze-key: the same key in PKCS#8 or PKCS#1 gives one pseudonym key; another key another; the key reveals nothing of the PEM', () => {
    const key = sessionHashKey(pkcs8(privateKey));
    assert.equal(key.length, 32);
    assert.deepEqual(sessionHashKey(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()), key);
    assert.notDeepEqual(sessionHashKey(pkcs8(other)), key);
    const der = createPrivateKey(pkcs8(privateKey)).export({ type: 'pkcs8', format: 'der' });
    assert.equal(der.includes(key), false);
  });

  it('session-hash-keyed-hmac: 12 base64url characters, not the plain SHA-256 prefix, stable per key, different across keys and names', () => {
    const hash = createSessionHasher(sessionHashKey(pkcs8(privateKey)));
    const again = createSessionHasher(sessionHashKey(pkcs8(privateKey)));
    const foreign = createSessionHasher(sessionHashKey(pkcs8(other)));
    for (const name of ['alice', 'alice@example.com', 'tenant-a:jwt:admin']) {
      assert.match(hash(name), /^[A-Za-z0-9_-]{12}$/);
      assert.notEqual(hash(name), plain(name), 'not reversible by hashing a list of user ids');
      assert.equal(hash(name), hash(name), 'remembered');
      assert.equal(again(name), hash(name), 'every replica with the same key agrees');
      assert.notEqual(foreign(name), hash(name), 'another deployment has other pseudonyms');
    }
    assert.notEqual(hash('alice'), hash('bob'));
  });
});
