import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { watchFile, type WatchedFile, type WatchedFileOptions } from '../config/watched-file.js';
import { AuthError, bearerCredential, looksLikeJwt, type IdentitySourceImpl } from './identity.js';

/** The keys of one version of the file, as digests. */
export interface ApiKeyTable {
  readonly entries: ReadonlyArray<{ subject: string; digest: Buffer }>;
  readonly size: number;
}

const fileSchema = z.array(
  z.object({ subject: z.string().min(1).max(256), sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected 64 hex characters') }).strict(),
);

/**
 * Parses the `{subject, sha256}` list (YAML or JSON); throws an Error naming the entry. A file
 * with no document at all is no keys at start-up and an error on a reload, where it is most often
 * a write caught half way: taking it would lock every API-key caller out. `[]` is no keys in both.
 */
export function parseApiKeys(text: string, options: { reload?: boolean } = {}): ApiKeyTable {
  const raw: unknown = parseYaml(text);
  if ((raw === null || raw === undefined) && options.reload) throw new Error('the file is empty (a write in progress?); write [] for no keys');
  const parsed = fileSchema.safeParse(raw ?? []);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`entry ${String(issue?.path[0] ?? '?')}: ${issue?.message ?? 'invalid'}`);
  }
  const seen = new Set<string>();
  const entries = parsed.data.map((entry, index) => {
    const sha256 = entry.sha256.toLowerCase();
    if (seen.has(sha256)) throw new Error(`entry ${index} repeats a key hash`);
    seen.add(sha256);
    return { subject: entry.subject, digest: Buffer.from(sha256, 'hex') };
  });
  return { entries, size: entries.length };
}

/** Reads and parses the file once (the start-up check): errors name the file. */
export function loadApiKeyFile(path: string): ApiKeyTable {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  try {
    return parseApiKeys(text);
  } catch (err) {
    throw new Error(`${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * identity.apiKeys.file, reloaded when it changes (watched-file.ts), so a leaked key is revoked
 * by editing the file (or its Secret), without a restart of every replica.
 */
export function watchApiKeys(options: { path: string; pollMs?: number; onReload?: WatchedFileOptions<ApiKeyTable>['onReload'] }): WatchedFile<ApiKeyTable> {
  return watchFile({ ...options, parse: parseApiKeys, size: (table) => table.size });
}

/**
 * API keys, stored only as SHA-256 hashes (the version of the file in force). The presented key is hashed and compared with every
 * entry in constant time, so neither the key nor which entry nearly matched leaks through timing.
 */
export function createApiKeySource(options: { keys: () => ApiKeyTable; close?: () => void }): IdentitySourceImpl {
  return {
    name: 'api_key',
    ...(options.close ? { close: options.close } : {}),
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
      for (const entry of options.keys().entries) {
        if (timingSafeEqual(entry.digest, digest)) subject = entry.subject;
      }
      if (subject === undefined) throw new AuthError('api_key', 'unknown_api_key', 'The API key is not known.');
      return { subject, source: 'api_key', claims: {} };
    },
  };
}
