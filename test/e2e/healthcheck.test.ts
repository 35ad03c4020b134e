import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, runCli as run, spawnServe, startCliFixture, type CliFixture, type ServeProcess } from '../helpers/cli-process.js';

/**
 * `healthcheck`, the Docker HEALTHCHECK: it followed ADMIN_PORT only, so an admin.port set in
 * GATEWAY_CONFIG made the container unhealthy, and whatever answered on 9091 made it healthy.
 */
describe('healthcheck command', () => {
  let fixture: CliFixture;
  let gateway: ServeProcess;
  let configFile: string;
  let adminPort: number;

  before(async () => {
    fixture = await startCliFixture('4243');
    adminPort = await freePort();
    configFile = join(fixture.dir, 'gateway.yaml');
    writeFileSync(configFile, `admin:\n  host: 0.0.0.0\n  port: ${adminPort}\n`);
    // ADMIN_PORT empty: only the file names the admin port.
    gateway = await spawnServe({ ...fixture.env, GATEWAY_CONFIG: configFile, ADMIN_PORT: '', ADMIN_HOST: '' });
    await gateway.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('listening'), '"listening"');
  });
  after(async () => {
    gateway.kill();
    await fixture.close();
  });

  it('healthcheck-follows-config-file-admin-port: healthy through the admin port GATEWAY_CONFIG names, asked on loopback for a wildcard host', async () => {
    const res = await run(['healthcheck'], { GATEWAY_CONFIG: configFile });
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `healthy: http://127.0.0.1:${adminPort}/healthz answered 200 (ok)\n`);
    const ready = await run(['healthcheck', '--ready'], { GATEWAY_CONFIG: configFile });
    assert.equal(ready.code, 0, ready.stderr);
    assert.equal(ready.stdout, `healthy: http://127.0.0.1:${adminPort}/readyz answered 200 (ready)\n`);
    // A flag beats the file, as for serve: here it points at a port where nothing listens.
    const closed = await freePort();
    const refused = await run(['healthcheck', `--admin.port=${closed}`], { GATEWAY_CONFIG: configFile });
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, `unhealthy: http://127.0.0.1:${closed}/healthz: ECONNREFUSED\n`);
  });

  it('healthcheck-refuses-a-stranger: a 200 from another process on the admin port is not health', async () => {
    const stranger = http.createServer((_req, res) => res.end('<html>hello</html>'));
    await new Promise<void>((resolve) => stranger.listen(0, '127.0.0.1', resolve));
    try {
      const port = (stranger.address() as AddressInfo).port;
      const res = await run(['healthcheck'], { ADMIN_PORT: String(port) });
      assert.equal(res.code, 1);
      assert.equal(res.stderr, `unhealthy: http://127.0.0.1:${port}/healthz answered 200, not the gateway admin endpoint\n`);
    } finally {
      stranger.close();
    }
  });

  it('healthcheck-on-fetch-blocked-port: an admin port browsers block (fetch refuses it) is probed all the same', async () => {
    const admin = http.createServer((_req, res) => res.setHeader('content-type', 'application/json').end('{"status":"ok"}'));
    // Ports on the fetch standard's bad-port list; the first free one serves.
    let port: number | undefined;
    for (const candidate of [10080, 6665, 6666, 6667, 6668, 6669, 6000, 5060, 2049]) {
      const bound = await new Promise<boolean>((resolve) => {
        admin.once('error', () => resolve(false));
        admin.listen(candidate, '127.0.0.1', () => resolve(true));
      });
      if (bound) {
        port = candidate;
        break;
      }
    }
    if (port === undefined) return assert.fail('none of the fetch-blocked ports is free on this machine');
    try {
      const res = await run(['healthcheck'], { ADMIN_PORT: String(port) });
      assert.equal(res.stdout, `healthy: http://127.0.0.1:${port}/healthz answered 200 (ok)\n`);
      assert.equal(res.code, 0);
    } finally {
      admin.close();
    }
  });

  it('healthcheck-bad-config-is-unhealthy: exit 1, never Docker\'s reserved 2, naming the setting and printing no secret', async () => {
    const res = await run(['healthcheck'], { ADMIN_PORT: 'nine', COZE_PRIVATE_KEY: 'not-a-key-SECRET' });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /^unhealthy: invalid configuration:\n {2}- admin\.port \(ADMIN_PORT\): /);
    assert.ok(!res.stderr.includes('SECRET'));
  });
});
