import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { answerFromStream, type UpstreamResponse } from '../../../src/proxy/forwarder.js';
import { filterResponse } from '../../../src/proxy/response-filter.js';
import { InspectionIdle, type InspectedResponse } from '../../../src/proxy/rewrite-response.js';

const answer = (body: PassThrough): UpstreamResponse => answerFromStream(200, { 'content-type': 'application/json' }, body);
const begun = (first: Buffer): InspectedResponse => ({ tokenRejected: false, cozeCode: undefined, prefix: [first], complete: false });

describe('response filter: the rest of a large answer', () => {
  it('filter-idle-is-inspection-idle: an answer that goes quiet past the inspection fails as a quiet inspection does (504, counted as idle_timeout by the handler), and is cut', async () => {
    const body = new PassThrough();
    const started = Date.now();
    await assert.rejects(Promise.resolve(filterResponse(answer(body), begun(Buffer.from('{"code":0,"data":{"name":"')), (b) => b, { idleTimeoutMs: 50 })), (err: unknown) => err instanceof InspectionIdle);
    assert.ok(Date.now() - started >= 45, 'after the idle timeout');
    assert.equal(body.destroyed, true, 'the upstream answer is cut');
  });

  it('reads the rest and filters the whole answer', async () => {
    const body = new PassThrough();
    const filtered = filterResponse(answer(body), begun(Buffer.from('{"code":0,')), (b) => Buffer.from(b.toString().toUpperCase()), { idleTimeoutMs: 1000 });
    body.end('"data":{}}');
    const result = await filtered;
    assert.equal(result.complete, true);
    assert.equal(Buffer.concat(result.prefix).toString(), '{"CODE":0,"DATA":{}}');
  });
});
