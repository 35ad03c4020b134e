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

const SDKS: ReadonlyArray<{ name: string; lang: Lang; requests: readonly RecordedRequest[]; reader: SdkStreamReader; user: string }> = [
  { name: 'cozepy 0.20.0', lang: 'PY', requests: PYTHON, reader: python, user: 'py-user' },
  { name: 'coze-go', lang: 'GO', requests: GO, reader: go, user: 'go-user' },
  { name: 'coze-java 0.4.2', lang: 'JAVA', requests: JAVA, reader: java, user: 'java-user' },
];

type Lang = 'PY' | 'GO' | 'JAVA';

/**
 * The end-user endpoints (method and path, ids as X) each of these SDKs calls, from the audit of
 * their source at the commits the fixtures name (coze-py 6b0f4cdf, coze-go f47b4f25, coze-java
 * 26b79da6): what "every end-user call" means in README.md and docs/sdk.md.
 */
const ALL: readonly Lang[] = ['PY', 'GO', 'JAVA'];
const END_USER_ENDPOINTS: ReadonlyArray<readonly [string, readonly Lang[]]> = [
  ['GET /v1/audio/live/X', ['PY', 'GO']],
  ['POST /v1/audio/rooms', ALL],
  ['POST /v1/audio/speech', ALL],
  ['WS /v1/audio/speech', ALL],
  ['POST /v1/audio/transcriptions', ALL],
  ['WS /v1/audio/transcriptions', ALL],
  ['WS /v1/chat', ALL],
  ['POST /v1/conversation/create', ALL],
  ['POST /v1/conversation/message/create', ALL],
  ['POST /v1/conversation/message/delete', ALL],
  ['POST /v1/conversation/message/list', ALL],
  ['POST /v1/conversation/message/modify', ALL],
  ['GET /v1/conversation/message/retrieve', ['PY', 'GO']],
  ['POST /v1/conversation/message/retrieve', ['JAVA']],
  ['GET /v1/conversation/retrieve', ALL],
  ['GET /v1/conversations', ALL],
  ['DELETE /v1/conversations/X', ['PY']],
  ['PUT /v1/conversations/X', ['PY']],
  ['POST /v1/conversations/X/clear', ALL],
  ['DELETE /v1/conversations/X/messages/X/feedback', ['PY', 'GO']],
  ['POST /v1/conversations/X/messages/X/feedback', ['PY', 'GO']],
  ['GET /v1/files/retrieve', ALL],
  ['POST /v1/files/upload', ALL],
  ['GET /v1/variables', ALL],
  ['PUT /v1/variables', ALL],
  ['POST /v1/workflow/run', ALL],
  ['POST /v1/workflow/stream_resume', ALL],
  ['POST /v1/workflow/stream_run', ALL],
  ['POST /v1/workflows/chat', ALL],
  ['POST /v3/chat', ALL],
  ['POST /v3/chat/cancel', ALL],
  ['GET /v3/chat/message/list', ALL],
  ['GET /v3/chat/retrieve', ['GO', 'JAVA']],
  ['POST /v3/chat/retrieve', ['PY']],
  ['POST /v3/chat/submit_tool_outputs', ALL],
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
        const fill = (text: string, encode: (value: string) => string) =>
          text.replace(/\{(\w+)\}/g, (_, name: string) => {
            assert.ok(names[name] !== undefined, `${what}: {${name}} was captured`);
            return encode(names[name] as string);
          });
        const target = fill(recorded.target, encodeURIComponent);
        // A JSON body names captured ids as the SDK would put them (ids are digits: nothing to escape).
        const body = typeof recorded.body === 'string' ? fill(recorded.body, (value) => value) : recorded.body;
        if (recorded.upgrade) {
          await assertUpgrade(recorded, target, what);
          continue;
        }
        if (recorded.owned) {
          const intruder = await send(recorded, target, body, bob);
          assert.equal(intruder.status, 200, `${what} as bob: ${intruder.body}`);
          assert.equal(intruder.json().code, 4101, `${what} as bob: ${intruder.body}`);
        }
        const before = c.stack.emulator.requests.length;
        const res = await send(recorded, target, body, alice);
        assert.equal(res.status, 200, `${what}: ${res.body}`);
        assert.equal(res.headers['x-gateway-error'], undefined, what);
        assert.ok(res.headers['x-tt-logid'], `${what}: Coze's log id reached the SDK`);
        const seen = c.stack.emulator.requests.slice(before);
        assert.equal(seen.length, 1, `${what}: one request reached Coze`);
        assertForwarded(seen[0] as SeenRequest, recorded, target, body, sdk.user, what);

        if (recorded.stream) {
          const parsed = sdk.reader[recorded.stream.framing](Buffer.from(res.body));
          assert.deepEqual(parsed.outcome, { kind: 'end' }, `${what}: ${JSON.stringify(parsed)}`);
          assert.deepEqual(distinct(parsed.events.map((e) => e.event)), recorded.stream.events, what);
          Object.assign(names, recorded.stream.capture?.(parsed.events) ?? {});
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

  it('sdk-end-user-calls-all-replayed: every end-user endpoint each SDK calls has a recorded request', () => {
    const missing: string[] = [];
    for (const sdk of SDKS) {
      const replayed = new Set(sdk.requests.map((r) => `${r.upgrade ? 'WS' : r.method} ${new URL(r.target.replace(/\{\w+\}/g, 'X'), 'http://x').pathname.replace(/\/\d{6,}/g, '/X')}`));
      for (const [endpoint, sdks] of END_USER_ENDPOINTS) {
        if (sdks.includes(sdk.lang) && !replayed.has(endpoint)) missing.push(`${sdk.name}: ${endpoint}`);
      }
    }
    assert.deepEqual(missing, []);
  });

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

  function send(recorded: RecordedRequest, target: string, sent: RecordedRequest['body'], authorization: string): Promise<RawResponse> {
    let body: Buffer | undefined;
    const headers: Record<string, string> = { ...recorded.headers, authorization };
    if (typeof sent === 'string') {
      body = Buffer.from(sent);
    } else if (sent) {
      const { field, filename, content, type } = sent.multipart;
      body = Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: ${type ?? 'application/octet-stream'}\r\n\r\n${content}\r\n--${BOUNDARY}--\r\n`);
      headers['content-type'] = `multipart/form-data; boundary=${BOUNDARY}`;
    }
    if (body) headers['content-length'] = String(body.length);
    return request(c.stack.url, { method: recorded.method, path: target, headers, ...(body ? { body } : {}) });
  }
});

/** Coze saw the SDK's request: same method, path, query and headers, the body as sent but for the forced identity. */
function assertForwarded(seen: SeenRequest, recorded: RecordedRequest, target: string, body: RecordedRequest['body'], sdkUser: string, what: string): void {
  const sent = new URL(target, 'http://x');
  assert.equal(seen.method, recorded.method, what);
  assert.equal(seen.path, sent.pathname, what);
  assert.equal(seen.sessionName, 'alice', what);
  const query = Object.fromEntries(sent.searchParams);
  if (query.connector_uid !== undefined) query.connector_uid = 'alice';
  assert.deepEqual(seen.query, query, `${what}: the query`);
  for (const name of ['user-agent', 'x-coze-client-user-agent', 'x-tt-logid']) assert.equal(seen.headers[name], recorded.headers?.[name], `${what}: ${name}`);
  assert.match(String(seen.headers.authorization), /^Bearer czs_/, what);
  if (typeof body === 'string') {
    // Every identity field the SDK sent named its own user; only those values change, byte for byte.
    assert.equal(seen.rawBody, body.replaceAll(`"${sdkUser}"`, '"alice"'), `${what}: the body`);
  }
}

function distinct(names: string[]): string[] {
  return names.filter((name, i) => name !== names[i - 1]);
}
