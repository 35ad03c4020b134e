import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { startStack, type Stack } from '../helpers/stack.js';

const ALICE_KEY = 'alice-api-key-0123456789';
const BOB_KEY = 'bob-api-key-0123456789ab';
const entry = (subject: string, key: string) => `- subject: ${subject}\n  sha256: ${createHash('sha256').update(key).digest('hex')}\n`;

/** Polls until `check` holds: the watcher reacts to file events, or to its 5 s poll at worst. */
async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`not within 15 s: ${what}`);
}

describe('api-key-reload: identity.apiKeys.file is reloaded when it changes', () => {
  let dir: string;
  let keysFile: string;
  let stack: Stack;
  const status = async (key: string) => (await request(stack.url).get('/v1/bots/b').set('x-api-key', key)).status;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'csg-key-reload-'));
    keysFile = join(dir, 'keys.yaml');
    writeFileSync(keysFile, entry('alice', ALICE_KEY));
    stack = await startStack({ env: { IDENTITY_API_KEYS_FILE: keysFile, SESSION_NAME_TEMPLATE: '{source}:{subject}' } });
  });
  after(async () => {
    await stack.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes the file in one step, as a ConfigMap or Secret update swaps it. */
  const replace = (text: string) => {
    const next = join(dir, 'keys.yaml.next');
    writeFileSync(next, text);
    renameSync(next, keysFile);
  };

  it('revokes a removed key and admits an added one, without a restart', async () => {
    assert.equal(await status(ALICE_KEY), 200);
    assert.equal(await status(BOB_KEY), 401);
    replace(entry('bob', BOB_KEY));
    await eventually(async () => (await status(ALICE_KEY)) === 401, "alice's key is refused");
    assert.equal(await status(BOB_KEY), 200, "bob's key is taken");
    assert.ok(stack.logs.some((l) => l.includes('identity.apiKeys.file reloaded')));
    assert.ok(!stack.logs.some((l) => l.includes(BOB_KEY) || l.includes(createHash('sha256').update(BOB_KEY).digest('hex'))), 'neither the key nor its hash is logged');
  });

  it('keeps the last good version when the file is read empty (a write caught half way) or broken, and reports it', async () => {
    writeFileSync(keysFile, '');
    await eventually(async () => stack.logs.some((l) => l.includes('the file is empty')), 'the empty file is reported');
    assert.equal(await status(BOB_KEY), 200, 'an empty read does not lock every key out');
    replace('- subject: bob\n  sha256: not-hex\n');
    await eventually(async () => stack.logs.some((l) => l.includes('expected 64 hex characters')), 'the broken file is reported');
    assert.equal(await status(BOB_KEY), 200, 'still the last good version');
    const metrics = await request(stack.gateway.adminHandler).get('/metrics');
    assert.match(metrics.text, /coze_gateway_api_key_reloads_total\{outcome="error"\} [1-9]/);
  });

  it('takes [] for no keys', async () => {
    replace('[]\n');
    await eventually(async () => (await status(BOB_KEY)) === 401, 'every key is refused');
  });
});
