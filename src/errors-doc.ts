import { ERROR_CATALOGUE } from './errors.js';

/** Renders docs/errors.md from the catalogue; a contract test keeps the two equal. */
export function renderErrorsMd(): string {
  const rows = Object.entries(ERROR_CATALOGUE).map(
    ([reason, spec]) => `| \`${reason}\` | ${spec.status} | ${spec.code} | ${spec.message.replace(/\|/g, '\\|')} |`,
  );
  return `# Gateway errors

<!-- Generated from src/errors.ts by \`npm run docs:errors\`. A test fails when this file drifts. -->

Every error the gateway produces itself is JSON in the Coze envelope, so the official SDKs surface it:

\`\`\`json
{"code": 403001, "msg": "This Coze API route is not exposed by the gateway. ...", "detail": {"logid": "<X-Request-Id>"}}
\`\`\`

It carries the HTTP status below, an \`X-Gateway-Error: <reason>\` header and an \`X-Request-Id\` header, so you
can tell a gateway error from a Coze one: Coze's own errors (for example \`{"code":4100,...}\`) pass through
untouched and never carry \`X-Gateway-Error\`. A 401 also carries \`WWW-Authenticate: Bearer\`, and a 429 carries
\`Retry-After\`. Envelope codes are the HTTP status times 1000 plus a number, so they never collide with Coze's,
with one deliberate exception: every 401 (the caller's own credential was missing or refused) has code
**4100**, Coze's "authentication is invalid". The Chat SDKs (the Taro chat-sdk, open-chat) call their
\`onRefreshToken\` only when \`code || status\` is 401, 4100, 4101 or 700012006, and read the body code first, so
an expired credential must look like this for them to fetch a new one. \`X-Gateway-Error\` still names the reason.

| Reason (\`X-Gateway-Error\`) | HTTP status | \`code\` | Message |
|---|---|---|---|
${rows.join('\n')}

## Errors inside a stream

When an SSE stream cannot end normally, the gateway ends it with one final event in Coze's own framing:
\`event:error\` with \`{"code","msg"}\` for chat streams, and for workflow streams \`id: <last id + 1>\`,
\`event: Error\` and \`{"error_code","error_message"}\` (the Python, Go and Java SDKs start a workflow event
only at its \`id:\` line). Events are relayed whole: if Coze stopped in the middle of an event, that unfinished
event is left out, so every SDK parses each earlier event and then the final one.

| Code | When |
|---|---|
| 502002 | Coze cut the stream before it ended. |
| 503001 | The gateway is shutting down and the stream outlived the drain window. |
| 504002 | Coze sent nothing for \`server.streamIdleTimeoutSeconds\`. |
`;
}
