import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { renderConfigurationMd, renderDefaultYaml } from '../../src/config/docs.js';
import { listSettings } from '../../src/config/schema.js';
import { CREDENTIAL_FAILURE_CODE, ERROR_CATALOGUE } from '../../src/errors.js';
import { renderErrorsMd } from '../../src/errors-doc.js';
import { ENDPOINTS } from '../../src/policy/endpoints.js';
import { renderRoutesMd } from '../../src/policy/routes-doc.js';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

describe('docs stay equal to the code', () => {
  it('docs/configuration.md is generated from the schema (run `npm run docs:config`)', () => {
    assert.equal(read('docs/configuration.md'), renderConfigurationMd());
  });

  it('config/default.yaml is generated from the schema (run `npm run docs:config`)', () => {
    assert.equal(read('config/default.yaml'), renderDefaultYaml());
  });

  it('every setting and every environment variable appears in docs/configuration.md', () => {
    const doc = read('docs/configuration.md');
    for (const s of listSettings()) {
      assert.ok(doc.includes(`\`${s.key}\``), s.key);
      if (s.env) assert.ok(doc.includes(`\`${s.env}\``), s.env);
    }
  });

  it('docs/errors.md is generated from the catalogue (run `npm run docs:errors`)', () => {
    assert.equal(read('docs/errors.md'), renderErrorsMd());
  });

  it('docs/errors.md lists exactly the catalogue reasons, in both directions', () => {
    const documented = [...read('docs/errors.md').matchAll(/^\| `([a-z-]+)` \| (\d{3}) \| (\d+) \|/gm)].map((m) => [m[1], Number(m[2]), Number(m[3])]);
    const catalogue = Object.entries(ERROR_CATALOGUE).map(([reason, spec]) => [reason, spec.status, spec.code]);
    assert.deepEqual(documented, catalogue);
    // Codes are unique, except that every 401 shares Coze's 4100 on purpose: the Chat SDKs refresh
    // their token only on 401/4100/4101/700012006 and read the body code first (src/errors.ts).
    const unique = catalogue.filter((c) => c[1] !== 401).map((c) => c[2]);
    assert.equal(new Set(unique).size, unique.length, 'envelope codes are unique');
    assert.ok(!unique.includes(CREDENTIAL_FAILURE_CODE), 'no other reason uses the credential-failure code');
    const credentialFailures = catalogue.filter((c) => c[1] === 401);
    assert.deepEqual(credentialFailures.map((c) => c[0]), ['credential-missing', 'credential-invalid', 'untrusted-identity-header']);
    for (const [reason, , code] of credentialFailures) assert.equal(code, 4100, `${String(reason)} triggers the Chat SDKs' token refresh`);
  });
});

describe('docs/routes.md stays equal to the endpoint table', () => {
  it('is generated from src/policy/endpoints.ts (run `npm run docs:routes`)', () => {
    assert.equal(read('docs/routes.md'), renderRoutesMd());
  });

  it('lists every endpoint by method and path, and docs/configuration.md points at it', () => {
    const doc = read('docs/routes.md');
    for (const e of ENDPOINTS) assert.ok(doc.includes(`| \`${e.name}\` | ${e.method} | \`${e.path}\` |`), `${e.method} ${e.path}`);
    assert.match(read('docs/configuration.md'), /docs\/routes\.md/);
  });
});

describe('docs/metrics.md stays equal to the registry', () => {
  it('is generated from the metrics module (run `npm run docs:metrics`)', async () => {
    const { renderMetricsMd } = await import('../../src/metrics/metrics-doc.js');
    assert.equal(read('docs/metrics.md'), await renderMetricsMd());
  });

  it('holds every metric SPEC section 7 names', () => {
    const doc = read('docs/metrics.md');
    for (const name of [
      'http_requests_total', 'http_request_duration_seconds', 'upstream_response_seconds', 'active_streams', 'active_websockets',
      'token_cache_requests_total', 'token_cache_entries', 'token_mints_total', 'token_mint_duration_seconds', 'auth_failures_total',
      'policy_denials_total', 'rate_limited_total', 'upstream_errors_total', 'coze_error_codes_total',
    ]) {
      assert.ok(doc.includes(`\`coze_gateway_${name}\``), name);
    }
  });
});

describe('the README commands are the ones CI runs', () => {
  it('the README names npm test as the test command, .ci/run runs it, and the quick start scripts exist', () => {
    const readme = read('README.md');
    const ci = read('.ci/run');
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    assert.match(readme, /```sh\nnpm ci\nnpm run demo[^\n]*\nnpm test[^\n]*\n```/);
    assert.match(readme, /The test command, exactly as CI runs it[\s\S]*```sh\nnpm test\n```/);
    assert.match(ci, /^npm ci\b/m);
    assert.match(ci, /^npm test$/m);
    for (const script of ['test', 'demo', 'build', 'lint', 'typecheck']) assert.ok(pkg.scripts[script], script);
    for (const doc of ['docs/configuration.md', 'docs/errors.md', 'docs/metrics.md', 'docs/deployment.md', 'docs/sdk.md', 'docs/realtime-and-web-chat.md']) {
      assert.ok(readme.includes(doc.replace('docs/', '')), `README links ${doc}`);
    }
  });
});
