import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { CozeToken } from '../coze/token-client.js';

export interface TokenSealer {
  /** `kid.iv.tag.ciphertext`, base64url; `aad` binds it to one Redis key. */
  seal(token: CozeToken, aad: string): string;
  /** undefined when the value is malformed, from an unknown key, or was tampered with. */
  open(sealed: string, aad: string): CozeToken | undefined;
  readonly keyId: string;
}

/** A short public name for a key, stored next to each value so that keys can be rotated. */
export function encryptionKeyId(key: Buffer): string {
  return createHash('sha256').update('coze-session-gateway cache key').update(key).digest('hex').slice(0, 12);
}

/**
 * AES-256-GCM for tokens at rest in Redis (issue 9). New values use `current`; values sealed
 * with one of `previous` still open until they expire, so a key can be rotated without a mass
 * re-mint. A fresh 96-bit IV per value; the Redis key is the additional data, so a value copied
 * under another session's key does not open.
 */
export function createTokenSealer(current: Buffer, previous: Buffer[] = []): TokenSealer {
  const keys = new Map<string, Buffer>();
  for (const key of [current, ...previous]) keys.set(encryptionKeyId(key), key);
  const keyId = encryptionKeyId(current);
  return {
    keyId,
    seal(token, aad) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', current, iv);
      cipher.setAAD(Buffer.from(aad));
      const plaintext = Buffer.from(JSON.stringify({ a: token.accessToken, e: token.expiresAt }));
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return [keyId, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ciphertext.toString('base64url')].join('.');
    },
    open(sealed, aad) {
      const [kid, iv, tag, ciphertext] = sealed.split('.');
      const key = kid ? keys.get(kid) : undefined;
      if (!key || !iv || !tag || ciphertext === undefined) return undefined;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
        decipher.setAAD(Buffer.from(aad));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        const plaintext = Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]);
        const parsed = JSON.parse(plaintext.toString('utf8')) as { a?: unknown; e?: unknown };
        return typeof parsed.a === 'string' && typeof parsed.e === 'number' ? { accessToken: parsed.a, expiresAt: parsed.e } : undefined;
      } catch {
        return undefined;
      }
    },
  };
}
