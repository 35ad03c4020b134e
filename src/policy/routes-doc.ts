import { BODY_POLICY, BOT_DISPLAY_FIELDS, ENDPOINTS, QUERY_IDENTITY_FIELDS, USAGE_ENDPOINT, VENDING_ENDPOINT, type BodyRule, type Endpoint, type FieldPolicy } from './endpoints.js';

/**
 * Renders docs/routes.md from the endpoint table (endpoints.ts). A contract test regenerates it
 * and fails when the committed file drifts (`npm run docs:routes` rewrites it).
 */
export function renderRoutesMd(endpoints: readonly Endpoint[] = ENDPOINTS): string {
  const rows = [...endpoints, VENDING_ENDPOINT, USAGE_ENDPOINT].map(
    (e) => `| \`${e.name}\` | ${e.method} | \`${e.path}\` | ${transport(e)} | ${body(e.body)} | ${fields(e.query, true)} | ${events(e)} | ${tokens(e)} | ${e.summary}${e.response ? ` Answer reduced to display fields unless \`policy.botInfo: full\`.` : ''} |`,
  );
  const shared = ENDPOINTS[0].query;
  return `# Routes

<!-- Generated from src/policy/endpoints.ts by \`npm run docs:routes\`. Do not edit by hand: a test fails when this file drifts. -->

The endpoints the gateway exposes, and what it enforces on each. Anything else gets 403 \`route-forbidden\`;
\`/api/permission/*\` is never proxied. Each rule travels with its endpoint: a route is matched by method and
path, never by name, and the name is only the \`route\` label of metrics and logs. \`policy.routes\` and
\`policy.disabledRoutes\` narrow this table (docs/configuration.md); a \`{name, method, path}\` rule equal to an
endpoint below keeps that endpoint's policy whatever its name, and a route the gateway knows no policy for must
say \`passthrough: true\` (its body is forwarded unread; the query rules below still apply).

How to read the columns:
- **user** fields are forced to the caller's \`session_name\` (with \`policy.enforceUserId\`, the default).
- **bot**, **workflow** and **app** fields are checked against \`policy.allowedBotIds\`, \`allowedWorkflowIds\`
  and \`allowedAppIds\` (403 when one is set and the id is not on it). Path parameters count as query fields of
  the same name.
- **draft** fields are refused (403 \`draft-forbidden\`) unless \`policy.allowDrafts\`, except for the published
  value in brackets.
- Every query, on every endpoint: ${QUERY_IDENTITY_FIELDS.map((f) => `\`${f}\``).join(', ')} are refused (400
  \`identity-in-query\`) unless the endpoint forces them there; ${fields(shared, false)}.
- A field the gateway controls (in a body, a query or an event, and its parents) is refused with 400
  \`ambiguous-field\` when it is sent twice, in another letter case (\`USER_ID\`, \`uſer_id\`: Go's decoder would
  read them), or, in a query, with a percent-encoded name (\`user%5Fid\`, \`%61uthorization\`).
- Body **none**: a body is refused (400 \`unexpected-body\`). **stream**: forwarded unread, never buffered.
  **json**: must be \`Content-Type: application/json\` (UTF-8, no \`Content-Encoding\`; else 415), is read within
  \`server.bufferedBodyBudgetBytes\` and \`server.bodyReadTimeoutSeconds\`, checked, rewritten losslessly (only
  the forced fields change) and forwarded as \`application/json\`; **required** bodies may not be empty. Every
  JSON body is checked at its root for ${fields(BODY_POLICY, false)}.
- **framing** names the form of the gateway's own final SSE event (a drain, an idle cut, a reset).
- **Tokens**: where the answer reports the Coze tokens it spent, counted per caller
  (docs/usage-and-budgets.md): \`chat\` (a chat's usage once it has ended), \`workflow\` (a run's usage),
  \`history\` (an async run's usage in its run history). **free**: generates nothing, so a caller over a token
  budget keeps it (a request budget still counts it).
- Bot info answers keep only ${BOT_DISPLAY_FIELDS.map((f) => `\`${f}\``).join(', ')} of \`data\` (the
  kept fields byte for byte) unless \`policy.botInfo: full\`.

| Name | Method | Path | Transport | Body | Query | Events | Tokens | What it is |
|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}
`;
}

function transport(e: Endpoint): string {
  return e.framing ? `${e.transport} (${e.framing} framing)` : e.transport;
}

function body(rule: BodyRule): string {
  if (rule.kind !== 'json') return rule.kind;
  const own = fields({ user: rule.fields.user ?? [] }, false);
  return `json${rule.required ? ', required' : ''}${own === 'none' ? '' : `; ${own}`}`;
}

/** The controlled fields of a policy; `ownOnly` shows what differs from the shared query policy. */
function fields(policy: FieldPolicy, ownOnly: boolean): string {
  const parts: string[] = [];
  const list = (label: string, names: readonly string[] | undefined) => {
    if (names?.length) parts.push(`${label} ${names.map((n) => `\`${n}\``).join(', ')}`);
  };
  list('user', policy.user);
  if (!ownOnly) {
    list('bot', policy.bot);
    list('workflow', policy.workflow);
    list('app', policy.app);
    if (policy.draft?.length) parts.push(`draft ${policy.draft.map((d) => `\`${d.field}\`${d.published.length ? ` [${d.published.join(', ')}]` : ''}`).join(', ')}`);
  }
  if (policy.entity) parts.push(`\`${policy.entity.id}\` checked by \`${policy.entity.type}\` (bot, workflow or app)`);
  return parts.length ? parts.join('; ') : ownOnly ? 'shared rules' : 'none';
}

function tokens(e: Endpoint): string {
  const parts = [e.usage ? `\`${e.usage}\`` : '', e.tokenFree ? 'free' : ''].filter(Boolean);
  return parts.join(', ');
}

function events(e: Endpoint): string {
  if (!e.events) return '';
  const entries = Object.entries(e.events);
  if (entries.length === 0) return 'relayed as sent';
  return entries.map(([type, policy]) => `\`${type}\`: ${fields(policy, false)}`).join('<br>');
}
