import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AuthError, bearerCredential, looksLikeJwt, type IdentitySourceImpl } from './identity.js';

export interface ApiKeyEntry {
  subject: string;
  sha256: string;
}

const fileSchema = z.array(
  z.object({ subject: z.string().min(1).max(256), sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected 64 hex characters') }).strict(),
);

/** Reads the `{subject, sha256}` list (YAML or JSON). Called at start-up: errors name the file. */
export function loadApiKeyFile(path: string): ApiKeyEntry[] {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8')) ?? [];
  } catch (err) {
    throw new Error(`${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${path}: entry ${String(issue?.path[0] ?? '?')}: ${issue?.message ?? 'invalid'}`);
  }
  const seen = new Set<string>();
  return parsed.data.map((entry, index) => {
    const sha256 = entry.sha256.toLowerCase();
    if (seen.has(sha256)) throw new Error(`${path}: entry ${index} repeats a key hash`);
    seen.add(sha256);
    return { subject: entry.subject, sha256 };
  });
}

/**
 * API keys, stored only as SHA-256 hashes. The presented key is hashed and compared with every
 * entry in constant time, so neither the key nor which entry nearly matched leaks through timing.
 */
export function createApiKeySource(options: { entries: ApiKeyEntry[] }): IdentitySourceImpl {
  const entries = options.entries.map((e) => ({ subject: e.subject, digest: Buffer.from(e.sha256, 'hex') }));
  return {
    name: 'api_key',
    authenticate(req) {
      const header = req.headers['x-api-key'];
      let key: string | undefined;
      if (header !== undefined) {
        if (Array.isArray(header) || header === '' || header.includes(',')) throw new AuthError('api_key', 'malformed', 'Send exactly one X-Api-Key.');
        key = header;
      } else {
        const bearer = bearerCredential(req, 'api_key');
        if (bearer === undefined || looksLikeJwt(bearer)) return undefined;
        key = bearer;
      }
      const digest = createHash('sha256').update(key).digest();
      let subject: string | undefined;
      for (const entry of entries) {
        if (timingSafeEqual(entry.digest, digest)) subject = entry.subject;
      }
      if (subject === undefined) throw new AuthError('api_key', 'unknown_api_key', 'The API key is not known.');
      return { subject, source: 'api_key', claims: {} };
    },
  };
}
