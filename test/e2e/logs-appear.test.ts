import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { freePort, runCli, spawnServe, startCliFixture, type CliFixture, type ServeProcess } from '../helpers/cli-process.js';

const LOGGER = new URL('../../src/log/logger.ts', import.meta.url).pathname;

/**
 * Issue 16 item 2: log lines are batched but never held back. These tests wait for lines with a
 * generous timeout instead of timing the flush, so a busy machine slows them but never fails them.
 */
describe('logs appear', () => {
  let fixture: CliFixture;
  let env: Record<string, string>;
  let gateway: ServeProcess | undefined;

  before(async () => {
    fixture = await startCliFixture('5151', { 'logs-key-0123456789': 'logger' });
    env = { ...fixture.env, IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', SESSION_SHARED_NAMESPACE: 'true', LOG_LEVEL: 'info' };
  });
  after(async () => {
    gateway?.kill();
    await fixture.close();
  });

  it('logs-flush-on-a-quiet-server: serve logs one "listening" line with both ports and the identity sources, without any request', async () => {
    gateway = await spawnServe(env);
    // Before issue 16 this line sat in a 4 KiB buffer until about 16 requests had been logged.
    const line = await gateway.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('listening'), '"listening"');
    assert.equal(line.msg, `listening on 127.0.0.1:${gateway.port} (admin 127.0.0.1:${gateway.adminPort})`);
    assert.equal(line.port, gateway.port);
    assert.equal(line.adminPort, gateway.adminPort);
    assert.deepEqual(line.identitySources, ['trusted_header', 'api_key']);
    assert.equal(line.trustedHeader, 'x-forwarded-user', 'the operator learns the header here, never a caller from a 401');
    assert.equal(line.sharedCache, 'none');
    assert.equal(gateway.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('listening')).length, 1, 'one line');

    // A single request's line shows up too, long before a batch of lines has gathered.
    const res = await fetch(`http://127.0.0.1:${gateway.port}/v1/bots/b`, { headers: { 'x-api-key': 'logs-key-0123456789' } });
    const requestId = res.headers.get('x-request-id');
    await gateway.waitForLog((l) => l.requestId === requestId, `for request ${requestId}`);
    gateway.child.kill('SIGTERM');
    assert.equal((await gateway.exited).code, 0);
    assert.ok(gateway.logs.some((l) => l.msg === 'stopped'), 'the last line before exit is written');
  });

  it('logs-flush-on-exit: a line logged just before process.exit is written (the fatal path)', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `import { createLogger } from ${JSON.stringify(LOGGER)}; const log = createLogger({ level: 'info' }); log.error('last words'); process.exit(3);`], {
      env: { PATH: process.env.PATH ?? '' },
    });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 3);
    assert.equal((JSON.parse(stdout.trim()) as { msg: string }).msg, 'last words');
  });

  it('logs-flush-on-fatal-start-up: the lines logged before a fatal start-up error are on stdout', async () => {
    // Redis is unreachable (a warning is logged), then the main port is taken: exit 2, as a setting to change.
    const [busy, redisPort] = [net.createServer(), await freePort()];
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    try {
      const port = (busy.address() as net.AddressInfo).port;
      const res = await runCli(['serve'], {
        ...env,
        HOST: '127.0.0.1',
        PORT: String(port),
        ADMIN_PORT: '0',
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        CACHE_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
      });
      assert.equal(res.code, 2, res.stderr);
      assert.ok(res.stderr.includes(`  - server.port (PORT): port ${port} on 127.0.0.1 is already in use; with server.host (HOST) 127.0.0.1`), res.stderr);
      assert.match(res.stdout, /"msg":"Redis is not reachable at start-up: serving from memory until it is"/);
    } finally {
      busy.close();
    }
  });
});
