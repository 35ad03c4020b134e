import { Registry } from 'prom-client';
import { createMetrics } from './metrics.js';

interface DescribedMetric {
  name: string;
  help: string;
  labelNames?: readonly string[];
}

/** Renders docs/metrics.md from a real registry; a contract test keeps the two equal. */
export async function renderMetricsMd(): Promise<string> {
  const registry = new Registry();
  createMetrics({ registry, routeNames: [], tokenCacheEntries: () => 0, defaultMetrics: false });
  const metrics = (registry.getMetricsAsArray() as unknown as DescribedMetric[]).sort((a, b) => a.name.localeCompare(b.name));
  const json = await registry.getMetricsAsJSON();
  const typeOf = new Map(json.map((m) => [m.name, String(m.type)]));
  const rows = metrics.map((m) => `| \`${m.name}\` | ${typeOf.get(m.name) ?? ''} | ${(m.labelNames ?? []).map((l) => `\`${l}\``).join(', ')} | ${m.help} |`);
  return `# Metrics

<!-- Generated from src/metrics/metrics.ts by \`npm run docs:metrics\`. A test fails when this file drifts. -->

The admin port (\`admin.port\`, default 9091) serves Prometheus text at \`/metrics\`, with no auth: keep the
port off any public Service. Every metric is prefixed \`coze_gateway_\`. Labels come from closed sets only
(route rule names, methods, status codes, outcomes, reasons, known Coze codes); no metric ever carries a user,
a session, a token, an IP or a raw path. Known label values are zeroed at start, so \`rate()\` works from the
first scrape. The default Node.js process metrics are exported too, with the same prefix
(\`coze_gateway_process_cpu_seconds_total\`, \`coze_gateway_nodejs_eventloop_lag_p99_seconds\`, ...).

| Metric | Type | Labels | Meaning |
|---|---|---|---|
${rows.join('\n')}

Label values:
- \`route\`: the name of the allowlist rule that matched (\`chat\`, \`conversation.list\`, ...), \`gateway.token\`,
  \`gateway.usage\`, or \`unmatched\` (no rule matched, or the request was refused before routing: a bad
  path, an absolute URI, and the requests Node refuses itself, 431, 408 and malformed ones, whose method is \`OTHER\`; a
  connection that never sent a byte is closed unanswered and counted nowhere),
  or \`preflight\` (a CORS preflight, which the gateway answers itself whatever its path, so that it counts in no
  route's traffic or latency; method \`OTHER\`, status 204, or 403 for an origin not in \`cors.allowedOrigins\`).
- \`result\` (token cache): \`hit\`, \`stale\` (served while one background refresh runs), \`miss\`, \`coalesced\`
  (waited for a mint already in flight).
- \`outcome\` (mints): \`success\`, \`invalid_client\`, \`access_deny\`, \`invalid_request\`, \`unsupported_grant_type\`,
  \`server_error\`, \`network_error\`, \`timeout\`, \`bad_response\`, \`other_error\`; (override reloads): \`ok\`, \`error\`.
- \`kind\` (upstream errors): \`connect\`, \`reset\`, \`timeout\`, \`idle_timeout\`, \`bad_response\`, \`retried_token\`;
  (usage tokens): \`input\`, \`output\`.
- \`window\` and \`budget\` (budget refusals): \`day\` or \`month\`; \`tokens\` or \`requests\`.
- \`operation\` (Redis errors): \`read\`, \`lock\`, \`write\`, \`invalidate\`, \`rate_limit\`, \`usage\`.
- \`code\` (Coze error codes): the codes of Coze's error code list (https://www.coze.cn/open/docs/developer_guides/coze_error_codes) worth their own series, and \`other\`.

## PromQL examples

Gateway error rate (answers the gateway produced itself, 5xx):

\`\`\`promql
sum(rate(coze_gateway_http_requests_total{status=~"5.."}[5m])) / sum(rate(coze_gateway_http_requests_total[5m]))
\`\`\`

Token mint failures by outcome, and the share of lookups that had to wait for a mint:

\`\`\`promql
sum by (outcome) (rate(coze_gateway_token_mints_total{outcome!="success"}[5m]))
sum(rate(coze_gateway_token_cache_requests_total{result=~"miss|coalesced"}[5m])) / sum(rate(coze_gateway_token_cache_requests_total[5m]))
\`\`\`

p99 latency by route, and p99 time to the first streamed byte:

\`\`\`promql
histogram_quantile(0.99, sum by (le, route) (rate(coze_gateway_http_request_duration_seconds_bucket[5m])))
histogram_quantile(0.99, sum by (le, route) (rate(coze_gateway_upstream_first_byte_seconds_bucket[5m])))
\`\`\`

Authentication failures by reason, and Coze telling us a token was invalid:

\`\`\`promql
sum by (source, reason) (rate(coze_gateway_auth_failures_total[5m]))
rate(coze_gateway_coze_error_codes_total{code="4100"}[5m])
\`\`\`
`;
}
