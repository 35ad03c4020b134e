import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBatchedDestination } from '../../../src/log/batched-destination.js';

const MODULE = new URL('../../../src/log/batched-destination.ts', import.meta.url).pathname;

/** Waits (generously: a busy machine slows these tests, never fails them) until `ok` holds. */
async function eventually(ok: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('batched log destination (issue 16, issue 17)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'batched-log-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function openFile(name: string): { fd: number; read(): string; close(): void } {
    const path = join(dir, name);
    const fd = openSync(path, 'a');
    return { fd, read: () => readFileSync(path, 'utf8'), close: () => closeSync(fd) };
  }

  it('batched-log-holds-lines-until-the-batch-is-full: nothing is written below the batch size, everything once it is reached, in order', async () => {
    const file = openFile('size.log');
    // A delay far beyond the test: only the size can hand the lines over.
    const out = createBatchedDestination({ fd: file.fd, batchBytes: 1000, maxDelayMs: 600_000 });
    const lines = Array.from({ length: 9 }, (_, i) => `{"n":${i},"pad":"${'x'.repeat(90)}"}\n`);
    for (const line of lines) out.write(line);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(file.read(), '', 'nine lines of 100 characters stay held');
    out.write(`{"n":9,"pad":"${'x'.repeat(90)}"}\n`);
    await eventually(() => file.read().split('\n').length === 11, 'the first batch');
    assert.equal(file.read(), [...lines, `{"n":9,"pad":"${'x'.repeat(90)}"}\n`].join(''));
    out.write('{"n":10}\n');
    await new Promise<void>((resolve, reject) => out.flush((err) => (err && (err as NodeJS.ErrnoException).code !== 'EINVAL' ? reject(err) : resolve())));
    assert.ok(file.read().endsWith('{"n":9,"pad":"' + 'x'.repeat(90) + '"}\n{"n":10}\n'), 'flush hands over a partial batch, after the earlier one');
    file.close();
  });

  it('batched-log-never-holds-a-line-long: a lone line is written within the delay', async () => {
    const file = openFile('delay.log');
    const out = createBatchedDestination({ fd: file.fd, batchBytes: 16_000, maxDelayMs: 20 });
    out.write('{"msg":"alone"}\n');
    assert.equal(file.read(), '');
    await eventually(() => file.read() === '{"msg":"alone"}\n', 'the lone line');
    out.write('{"msg":"again"}\n');
    await eventually(() => file.read() === '{"msg":"alone"}\n{"msg":"again"}\n', 'a second lone line (the timer is armed again)');
    file.close();
  });

  it('batched-log-written-on-exit: lines handed over and lines still held are all on stdout, each once, after process.exit', async () => {
    // 300 lines of about 100 bytes against a 16 KB batch: some are handed over, the rest held.
    const script = `import { createBatchedDestination } from ${JSON.stringify(MODULE)};
const out = createBatchedDestination({ fd: 1, batchBytes: 16000, maxDelayMs: 600000 });
for (let i = 0; i < 300; i++) out.write(JSON.stringify({ i, pad: 'y'.repeat(80) }) + '\\n');
process.exit(4);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { PATH: process.env.PATH ?? '' } });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 4);
    const seen = stdout.trim().split('\n').map((l) => (JSON.parse(l) as { i: number }).i);
    // A batch the thread pool is still writing at exit may land after the held lines (as with
    // pino's own exit hook): every line is there once, the order of one batch is not promised.
    assert.deepEqual(
      [...seen].sort((a, b) => a - b),
      Array.from({ length: 300 }, (_, i) => i),
    );
  });
});
