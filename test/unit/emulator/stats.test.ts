import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createEmulator, generateEmulatorApp, type Emulator } from '../../../src/emulator/index.js';

/** One GET through `agent`; the emulator refuses it (no token), which is all this needs. */
function get(emulator: Emulator, agent: http.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(`${emulator.url}/v1/bots/b`, { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

describe('emulator stats', () => {
  let emulator: Emulator;
  before(async () => {
    emulator = await createEmulator({ apps: [(await generateEmulatorApp('111')).app] });
  });
  after(() => emulator.close());

  it('emulator-counts-connections: connections accepted are counted, a kept-alive one once, and reset() zeroes the count', async () => {
    const keptAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      emulator.reset();
      await get(emulator, keptAlive);
      await get(emulator, keptAlive);
      assert.equal(emulator.stats.connections, 1, 'two requests on one kept-alive connection');
      const fresh = new http.Agent({ keepAlive: false });
      await get(emulator, fresh);
      assert.equal(emulator.stats.connections, 2);
      emulator.reset();
      assert.equal(emulator.stats.connections, 0);
    } finally {
      keptAlive.destroy();
    }
  });
});
