import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RecordedRequest as SeenRequest } from '../../src/emulator/index.js';
import { request, type RawResponse } from '../helpers/http.js';
import { closed, nextMessage, openWebSocket } from '../helpers/websocket.js';
import { GO, JAVA, PYTHON, type RecordedRequest } from './fixtures/sdk-requests.js';
import { go } from './parsers/go.js';
import { java } from './parsers/java.js';
import { python } from './parsers/python.js';
import type { SdkStreamReader } from './parsers/types.js';
import { startConformance, type Conformance } from './support.js';

const SDKS: ReadonlyArray<{ name: string; requests: readonly RecordedRequest[]; reader: SdkStreamReader; user: string }> = [
  { name: 'cozepy 0.20.0', requests: PYTHON, reader: python, user: 'py-user' },
  { name: 'coze-go', requests: GO, reader: go, user: 'go-user' },
  { name: 'coze-java 0.4.2', requests: JAVA, reader: java, user: 'java-user' },
];

const BOUNDARY = 'csg-recorded-boundary';

/**
 * The Python, Go and Java SDKs cannot be installed in CI, so their requests are replayed as
 * recorded from their source (fixtures/sdk-requests.ts), and their streams are read with their
 * own readers restated (parsers/). Each request must pass the gateway (no 403 for a call the SDK
 * makes), reach Coze unchanged but for the credential and the identity fields, and get Coze's
 * answer; each one that touches alice's resources is first replayed by bob, who must get 4101.
 */
describe('recorded Python, Go and Java SDK requests through the gateway', () => {
  let c: Conformance;
  let alice: string;
  let bob: string;
  before(async () => {
    c = await startConformance();
    alice = `Bearer ${await c.stack.callerToken('alice')}`;
    bob = `Bearer ${await c.stack.callerToken('bob')}`;
  });
  after(() => c.close());

  for (const sdk of SDKS) {
    it(`${sdk.name}: every recorded end-user call is accepted, forwarded as sent and answered; bob is refused alice’s resources`, async () => {
      const names: Record<string, string> = {};
      for (const recorded of sdk.requests) {
        const what = `${sdk.name} ${recorded.call}`;
        const target = recorded.target.replace(/\{(\w+)\}/g, (_, name: string) => {
          assert.ok(names[name], `${what}: {${name}} was captured`);
          return encodeURIComponent(names[name] as string);
        });
        if (recorded.upgrade) {
          await assertUpgrade(recorded, target, what);
          continue;
        }
        if (recorded.owned) {
          const intruder = await send(recorded, target, bob);
          assert.equal(intruder.status, 200, `${what} as bob: ${intruder.body}`);
          assert.equal(intruder.json().code, 4101, `${what} as bob: ${intruder.body}`);
        }
        const before = c.stack.emulator.requests.length;
        const res = await send(recorded, target, alice);
        assert.equal(res.status, 200, `${what}: ${res.body}`);
        assert.equal(res.headers['x-gateway-error'], undefined, what);
        assert.ok(res.headers['x-tt-logid'], `${what}: Coze's log id reached the SDK`);
        const seen = c.stack.emulator.requests.slice(before);
        assert.equal(seen.length, 1, `${what}: one request reached Coze`);
        assertForwarded(seen[0] as SeenRequest, recorded, target, sdk.user, what);

        if (recorded.stream) {
          const parsed = sdk.reader[recorded.stream.framing](Buffer.from(res.body));
          assert.deepEqual(parsed.outcome, { kind: 'end' }, `${what}: ${JSON.stringify(parsed)}`);
          assert.deepEqual(distinct(parsed.events.map((e) => e.event)), recorded.stream.events, what);
        } else if (/json/.test(String(res.headers['content-type']))) {
          const answer = res.json() as { code: number; data?: unknown } & Record<string, unknown>;
          assert.equal(answer.code, 0, `${what}: ${res.body}`);
          Object.assign(names, recorded.capture?.(answer) ?? {});
        } else {
          assert.match(String(res.headers['content-type']), /^audio\//, what);
        }
      }
    });
  }

  async function assertUpgrade(recorded: RecordedRequest, target: string, what: string): Promise<void> {
    const ws = await openWebSocket(`${c.stack.url.replace('http', 'ws')}${target}`, { ...recorded.headers, authorization: alice });
    const first = JSON.parse((await nextMessage(ws)).data.toString()) as { event_type: string };
    assert.match(first.event_type, /\.created$/, what);
    const upstream = c.stack.emulator.websockets.at(-1);
    assert.equal(upstream?.sessionName, 'alice', what);
    assert.equal(upstream?.headers['user-agent'], recorded.headers?.['user-agent'], `${what}: the SDK's user agent reached Coze`);
    ws.close();
    await closed(ws);
  }

  function send(recorded: RecordedRequest, target: string, authorization: string): Promise<RawResponse> {
    let body: Buffer | undefined;
    const headers: Record<string, string> = { ...recorded.headers, authorization };
    if (typeof recorded.body === 'string') {
      body = Buffer.from(recorded.body);
    } else if (recorded.body) {
      const { field, filename, content } = recorded.body.multipart;
      body = Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n${content}\r\n--${BOUNDARY}--\r\n`);
      headers['content-type'] = `multipart/form-data; boundary=${BOUNDARY}`;
    }
    if (body) headers['content-length'] = String(body.length);
    return request(c.stack.url, { method: recorded.method, path: target, headers, ...(body ? { body } : {}) });
  }
});

/** Coze saw the SDK's request: same method, path, query and headers, the body as sent but for the forced identity. */
function assertForwarded(seen: SeenRequest, recorded: RecordedRequest, target: string, sdkUser: string, what: string): void {
  const sent = new URL(target, 'http://x');
  assert.equal(seen.method, recorded.method, what);
  assert.equal(seen.path, sent.pathname, what);
  assert.equal(seen.sessionName, 'alice', what);
  const query = Object.fromEntries(sent.searchParams);
  if (query.connector_uid !== undefined) query.connector_uid = 'alice';
  assert.deepEqual(seen.query, query, `${what}: the query`);
  for (const name of ['user-agent', 'x-coze-client-user-agent', 'x-tt-logid']) assert.equal(seen.headers[name], recorded.headers?.[name], `${what}: ${name}`);
  assert.match(String(seen.headers.authorization), /^Bearer czs_/, what);
  if (typeof recorded.body === 'string') {
    // Every identity field the SDK sent named its own user; only those values change, byte for byte.
    assert.equal(seen.rawBody, recorded.body.replaceAll(`"${sdkUser}"`, '"alice"'), `${what}: the body`);
  }
}

function distinct(names: string[]): string[] {
  return names.filter((name, i) => name !== names[i - 1]);
}
