import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig } from '../../../src/config/load.js';
import { listSettings } from '../../../src/config/schema.js';
import { issuesOf } from '../../helpers/config-issues.js';
import { generateRsaKey } from '../../helpers/keys.js';

const dir = mkdtempSync(join(tmpdir(), 'csg-durations-'));
const keyFile = join(dir, 'private_key.pem');
writeFileSync(keyFile, generateRsaKey().privatePkcs8);
/** Node's timer limit: a longer setTimeout fires after 1 ms. */
const TIMER_LIMIT_MS = 2 ** 31 - 1;
const baseEnv = { COZE_APP_ID: '1127900106117', COZE_KEY_ID: 'kid-1', COZE_PRIVATE_KEY_FILE: keyFile, IDENTITY_API_KEYS_FILE: '/dev/null' };

/** Milliseconds per unit of a duration setting, read from its name (the naming test below keeps that honest). */
const unitMs = (key: string) => (key.endsWith('Seconds') ? 1000 : key.endsWith('Ms') ? 1 : undefined);
const integers = listSettings().filter((s) => s.type === 'integer');
const durations = integers.filter((s) => unitMs(s.key) !== undefined);

describe('duration settings stay within Node timers (timeouts past 2^31-1 ms fired after 1 ms)', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('names every duration setting by its unit, so the table below sees it', () => {
    const timeLike = integers.filter((s) => /timeout|interval|deadline|grace|ttl|cooldown|age|tolerance|delay|period|wait/i.test(s.key.split('.').pop() ?? ''));
    assert.ok(timeLike.length >= 10, 'the schema has its duration settings');
    for (const s of timeLike) assert.ok(unitMs(s.key), `${s.key} is a duration: its name ends in Seconds or Ms`);
  });

  for (const s of durations) {
    it(`duration-past-timer-limit-refused: ${s.key}`, () => {
      const unit = unitMs(s.key) as number;
      const tooLong = String(Math.floor(TIMER_LIMIT_MS / unit) + 1);
      // Through its environment variable where it has one, else its flag: both are how operators set it.
      const issues = issuesOf(() => loadConfig(s.env ? { env: { ...baseEnv, [s.env]: tooLong } } : { env: baseEnv, flags: { [s.key]: tooLong } }));
      const issue = issues.find((i) => i.key === s.key);
      assert.ok(issue, `${s.key}=${tooLong} is refused: ${JSON.stringify(issues)}`);
      assert.equal(issue.env, s.env);
      assert.match(issue.message, /Too big: expected number to be <=\d+/);
      assert.ok((s.max as number) * unit <= TIMER_LIMIT_MS, `${s.key}: its documented maximum ${s.max} fits a timer`);
    });
  }
});
