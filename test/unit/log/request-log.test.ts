import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger } from '../../../src/log/logger.js';
import { createRequestLog, type RequestLogFields } from '../../../src/log/request-log.js';

/** A logger writing into an array, as the gateway's (service binding, redaction, ISO time, level label). */
function capture(level = 'info') {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { logger: createLogger({ level, destination }), lines };
}

const BASE: RequestLogFields = {
  requestId: '6f1d2c1e-7a54-4b8e-9f3e-2f1f0c1d2e3f',
  method: 'GET',
  route: 'bot.retrieve',
  path: '/v1/bots/7300000000000000001',
  status: 200,
  durationMs: 3,
  source: 'jwt',
  session: 'Jx3kF0aB_c-9',
  cozeLogId: '20261126155912010151054112',
  bytesIn: 0,
  bytesOut: 121,
};

const CASES: Record<string, Partial<RequestLogFields>> = {
  'every field': {},
  'a refusal before the caller is known': { route: 'unmatched', path: '-', status: 404, source: undefined, session: undefined, cozeLogId: undefined },
  'no method': { method: undefined },
  'a path and log id needing escapes': { path: '/v1/"quoted"\\back\u0001slash', cozeLogId: 'tab\there' },
  'non-ASCII and a long string': { path: `/v1/bots/${'é'.repeat(60)}`, route: 'x'.repeat(80) },
  'a client that left (499) and a zero duration': { status: 499, durationMs: 0, bytesOut: 0 },
  'the Coze tokens counted (issue 18)': { tokens: { input: 12, output: 34, total: 46 } },
  'an answer the gateway wrote itself (its X-Gateway-Error reason)': { route: 'unmatched', path: '-', status: 431, method: undefined, source: undefined, session: undefined, cozeLogId: undefined, error: 'headers-too-large' },
};

describe('request log line: the bytes pino writes, built directly', () => {
  for (const [name, change] of Object.entries(CASES)) {
    it(`request-log-same-bytes-as-pino: ${name}`, () => {
      const fields = { ...BASE, ...change };
      const { logger, lines } = capture();
      const requestLog = createRequestLog(logger);
      // Pino's own line for the same fields; the time is the only thing allowed to differ.
      logger.info({ ...fields });
      requestLog(fields);
      assert.equal(lines.length, 2);
      const [viaPino, direct] = lines.map((line) => line.replace(/"time":"[^"]+"/, '"time":"T"'));
      assert.equal(direct, viaPino);
      assert.match(lines[1] as string, /"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"/);
      assert.ok((lines[1] as string).endsWith('}\n'));
    });
  }

  it('request-log-respects-level: nothing is written when info is off', () => {
    const { logger, lines } = capture('warn');
    createRequestLog(logger)(BASE);
    assert.deepEqual(lines, []);
  });

  it('request-log-follows-level-changes: a level raised at run time silences the line, lowered again restores it', () => {
    const { logger, lines } = capture('info');
    const requestLog = createRequestLog(logger);
    logger.level = 'error';
    requestLog(BASE);
    assert.equal(lines.length, 0);
    logger.level = 'debug';
    requestLog(BASE);
    assert.equal(lines.length, 1);
  });
});
