import { createPrivateKey, randomBytes } from 'node:crypto';
import { importPKCS8, SignJWT } from 'jose';

export interface JwtSignerOptions {
  appId: string;
  keyId: string;
  /** PEM, PKCS#8 or PKCS#1 (the Coze console hands out PKCS#8). */
  privateKeyPem: string;
  audience: string;
  /** exp - iat. Short, because the JWT is exchanged at once and only once. */
  ttlSeconds: number;
  /** Seconds-resolution clock is derived from this; injected for tests. */
  now?: () => number;
}

/** Signs the one-shot JWTs exchanged at Coze's token endpoint (https://www.coze.cn/open/docs/developer_guides/oauth_jwt). */
export interface JwtSigner {
  /**
   * `customConsumer` goes into session_context.device_info.custom_consumer, Coze's own
   * per-end-user quota and billing hook (Enterprise Ultimate; Coze's oauth_jwt page).
   */
  sign(sessionName: string, context?: { customConsumer?: string | undefined }): Promise<string>;
}

export async function createJwtSigner(options: JwtSignerOptions): Promise<JwtSigner> {
  const now = options.now ?? Date.now;
  // jose 6 signs with WebCrypto keys and imports PKCS#8 only: normalise PKCS#1 first.
  const pkcs8 = createPrivateKey({ key: options.privateKeyPem, format: 'pem' }).export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = await importPKCS8(pkcs8, 'RS256');

  return {
    async sign(sessionName, context = {}): Promise<string> {
      const iat = Math.floor(now() / 1000);
      const claims = context.customConsumer ? { session_name: sessionName, session_context: { device_info: { custom_consumer: context.customConsumer } } } : { session_name: sessionName };
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: options.keyId })
        .setIssuer(options.appId)
        .setAudience(options.audience)
        .setIssuedAt(iat)
        .setExpirationTime(iat + options.ttlSeconds)
        // Each JWT may be exchanged once, and Coze asks for a jti of more than 32 random bytes.
        .setJti(randomBytes(32).toString('hex'))
        .sign(key);
    },
  };
}
