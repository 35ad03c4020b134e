import { generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type { EmulatorApp } from './types.js';

const generate = promisify(generateKeyPair);

/** A fresh OAuth app with one RSA-2048 key pair, made at run time: keys are never committed. */
export async function generateEmulatorApp(appId = '1127900106117'): Promise<{ app: EmulatorApp; privateKeyPem: string; kid: string }> {
  const { publicKey, privateKey } = await generate('rsa', { modulusLength: 2048 });
  const kid = randomBytes(32).toString('base64url');
  return {
    app: { appId, keys: [{ kid, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }] },
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    kid,
  };
}
