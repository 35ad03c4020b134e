import { generateKeyPairSync } from 'node:crypto';

export interface RsaTestKey {
  privatePkcs8: string;
  privatePkcs1: string;
  publicSpki: string;
}

/** Keys are made at test time; none is ever committed. */
export function generateRsaKey(modulusLength = 2048): RsaTestKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength });
  return {
    privatePkcs8: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    privatePkcs1: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicSpki: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}
