import { randomBytes } from 'node:crypto';
import { createTokenCache } from '../src/coze/token-cache.js';

/**
 * Memory per cached session: fills the real token cache with 100,000 sessions holding tokens
 * shaped like Coze's, and reports heap and RSS growth per entry. Needs --expose-gc.
 */
const SESSIONS = 100_000;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

const expiresAt = Math.floor(Date.now() / 1000) + 900;
const cache = createTokenCache({
  mint: async () => ({ accessToken: `czs_${randomBytes(32).toString('base64url')}`, expiresAt }),
  maxEntries: SESSIONS,
  refreshBeforeSeconds: 60,
  waitTimeoutMs: 10_000,
});
// Session names are built up front so that only the cache's own cost is measured.
const names = Array.from({ length: SESSIONS }, (_, i) => `tenant-prod-user-${String(i).padStart(8, '0')}`);
gc();
gc();
const before = process.memoryUsage();
for (let i = 0; i < SESSIONS; i += 1000) {
  await Promise.all(names.slice(i, i + 1000).map((n) => cache.lookup(n)));
}
gc();
gc();
const after = process.memoryUsage();
if (cache.size !== SESSIONS) throw new Error(`expected ${SESSIONS} entries, got ${cache.size}`);
const heap = after.heapUsed - before.heapUsed;
const rss = after.rss - before.rss;
console.log(
  JSON.stringify({
    sessions: SESSIONS,
    heapPerEntry: Math.round(heap / SESSIONS),
    rssPerEntry: Math.round(rss / SESSIONS),
    heapDeltaMiB: (heap / 2 ** 20).toFixed(1),
    rssDeltaMiB: (rss / 2 ** 20).toFixed(1),
  }),
);
