import 'reflect-metadata';
import { KeyObject, webcrypto } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

export interface TlsFiles {
  /** The private CA's certificate: what cache.redisTlsCaFile names. */
  caFile: string;
  certFile: string;
  keyFile: string;
}

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

/**
 * A private CA and a server certificate it signed, for 127.0.0.1 and localhost, written into
 * `dir` (a test's temporary folder: keys are made per run and never committed). `name`
 * distinguishes two CAs, so a test can show that a wrong CA is refused.
 */
export async function writeTestCertificates(dir: string, name = 'csg-test'): Promise<TlsFiles> {
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const caKeys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name} CA`,
    keys: caKeys,
    signingAlgorithm: SIGNING,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + DAY_MS),
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  const serverKeys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const server = await x509.X509CertificateGenerator.create({
    subject: `CN=${name} redis`,
    issuer: ca.subject,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: SIGNING,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + DAY_MS),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      // Redis uses one certificate as server and, towards other nodes, as client.
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'ip', value: '127.0.0.1' },
        { type: 'dns', value: 'localhost' },
      ]),
    ],
  });
  const files = { caFile: join(dir, `${name}-ca.pem`), certFile: join(dir, `${name}-server.pem`), keyFile: join(dir, `${name}-server.key`) };
  writeFileSync(files.caFile, ca.toString('pem'));
  writeFileSync(files.certFile, server.toString('pem'));
  writeFileSync(files.keyFile, KeyObject.from(serverKeys.privateKey).export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return files;
}
