import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

const SUITES = [
  'test/contract/token-cache.contract.test.ts',
  'test/unit/cache/redis-token-store.test.ts',
  'test/e2e/scale-out.test.ts',
  'test/e2e/redis-tls-acl.test.ts',
  'test/e2e/redis-sentinel.test.ts',
  'test/e2e/redis-cluster.test.ts',
];
const ROOT = new URL('../..', import.meta.url).pathname;

/**
 * Issue 16 item 8: on a machine without redis-server the Redis suites skip with one line each
 * that names redis-server, nothing else is cancelled, and no hook throws. CSG_REDIS_SERVER
 * pointing at nothing is what test/helpers/redis.ts sees on such a machine.
 */
describe('without redis-server', () => {
  it('redis-suites-skip-cleanly: one SKIP line per Redis suite, the memory contract still runs, exit 0', { timeout: 180_000 }, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', ...SUITES], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', CSG_REDIS_SERVER: '/nonexistent/redis-server' },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, out);
    const skips = out.split('\n').filter((l) => / # SKIP /.test(l));
    // Files run in parallel, so the suites are numbered in the order they finish.
    assert.deepEqual(
      skips.map((l) => l.replace(/^ok \d+ - /, '')).sort(),
      [
        'Redis Cluster: three masters',
        'Redis Sentinel: a master, a replica and three Sentinels',
        'Redis: one node with TLS and an ACL user',
        'redis token store',
        'scale-out on Redis',
        'token-cache contract: memory + redis',
      ].map(
        (name) => `${name} # SKIP redis-server not usable at CSG_REDIS_SERVER=/nonexistent/redis-server: skipping the Redis suite`,
      ),
    );
    assert.match(out, /^# fail 0$/m);
    assert.match(out, /^# cancelled 0$/m);
    assert.match(out, /^ok \d+ - token-cache contract: memory$/m, 'the memory contract ran and passed');
    assert.doesNotMatch(out, /not ok/);
  });

  it('redis-cli-missing-skips-the-cluster: with redis-server but no redis-cli, the cluster suite skips with one line naming redis-tools', { timeout: 60_000 }, async () => {
    // /bin/true answers `--version` as a redis-server would; the suite skips before starting one.
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', 'test/e2e/redis-cluster.test.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', CSG_REDIS_SERVER: '/bin/true', CSG_REDIS_CLI: '/nonexistent/redis-cli' },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    assert.equal(await new Promise<number | null>((resolve) => child.on('close', resolve)), 0, out);
    assert.deepEqual(
      out.split('\n').filter((l) => / # SKIP /.test(l)),
      ['ok 1 - Redis Cluster: three masters # SKIP redis-cli not usable at CSG_REDIS_CLI=/nonexistent/redis-cli: skipping the Redis Cluster suite'],
    );
  });
});
