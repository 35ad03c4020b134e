import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { loadConfig } from '../../../src/config/load.js';
import { createLogger } from '../../../src/log/logger.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { ENDPOINTS } from '../../../src/policy/endpoints.js';
import { ZERO, type SharedUsageStore } from '../../../src/usage/usage-counter.js';
import { createUsageService } from '../../../src/usage/usage-service.js';
import { createFakeClock } from '../../helpers/clock.js';
import { generateRsaKey } from '../../helpers/keys.js';

const dir = mkdtempSync(join(tmpdir(), 'csg-usage-service-'));
const keyFile = join(dir, 'private_key.pem');
writeFileSync(keyFile, generateRsaKey().privatePkcs8);
const config = loadConfig({ env: { COZE_APP_ID: '1127900106117', COZE_KEY_ID: 'kid-1', COZE_PRIVATE_KEY_FILE: keyFile, IDENTITY_API_KEYS_FILE: '/dev/null', BUDGET_FOLLOW_UP_ENABLED: 'false' } });
const retrieve = ENDPOINTS.find((e) => e.name === 'chat.retrieve') ?? assert.fail('no chat.retrieve');

/** A store whose claims another replica wins, answered when the test says. */
function slowClaimStore() {
  const answers: Array<(first: boolean) => void> = [];
  const store: SharedUsageStore = {
    available: true,
    add: async (_tag, _stamp, windows) => windows.map(() => ({ ...ZERO })),
    claimOnce: () => new Promise<boolean>((resolve) => answers.push(resolve)),
    isClaimed: async () => false,
  };
  return { store, answerAll: (first: boolean) => answers.splice(0).forEach((answer) => answer(first)) };
}

describe('usage service', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('claim-take-back-stays-in-its-day: a chat another replica claimed is taken back in its own day, never from the next', async () => {
    const clock = createFakeClock(Date.UTC(2026, 5, 1, 23, 59, 59));
    const claims = slowClaimStore();
    const service = createUsageService({
      budgets: { ...config.budgets, syncIntervalMs: 3_600_000 },
      store: claims.store,
      metrics: createMetrics({ registry: new Registry(), routeNames: ['chat.retrieve'], tokenCacheEntries: () => 0, defaultMetrics: false }),
      logger: createLogger({ level: 'silent' }),
      now: clock.now,
    });
    const completed = (id: string) => Buffer.from(JSON.stringify({ code: 0, data: { id, conversation_id: 'c', status: 'completed', usage: { token_count: 28, input_count: 11, output_count: 17 } } }));

    // Claimed elsewhere, answered the same day: taken back.
    service.track(retrieve, 'jwt:ann')?.onBody(completed('same-day'), true);
    assert.equal(service.counter.view('jwt:ann').day.total, 28, 'counted at once');
    claims.answerAll(false);
    await new Promise((r) => setImmediate(r));
    assert.equal(service.counter.view('jwt:ann').day.total, 0, 'the other replica counted it');

    // Claimed elsewhere, answered after midnight: the new day owes nothing.
    service.track(retrieve, 'jwt:ann')?.onBody(completed('late-answer'), true);
    clock.advance(2000);
    claims.answerAll(false);
    await new Promise((r) => setImmediate(r));
    const view = service.counter.view('jwt:ann');
    assert.equal(view.day.label, '2026-06-02');
    assert.deepEqual([view.day.input, view.day.output, view.day.total], [0, 0, 0], 'no negative tokens lent to the new day');
    await service.close();
  });
});
