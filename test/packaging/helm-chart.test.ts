import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { listSettings } from '../../src/config/schema.js';

const CHART = resolve(new URL('../../helm/coze-session-gateway', import.meta.url).pathname);
const EXAMPLES = resolve(new URL('../../helm/examples', import.meta.url).pathname);
const read = (path: string) => readFileSync(path, 'utf8');
const settings = listSettings();
const settingKeys = new Set(settings.flatMap((s) => (s.fileKey ? [s.key, s.fileKey] : [s.key])));
const envNames = new Set([...settings.flatMap((s) => [s.env, s.fileEnv]).filter((e): e is string => !!e), 'GATEWAY_CONFIG', 'NODE_ENV', 'NODE_OPTIONS']);

/** Dotted keys of every leaf of a config-shaped tree (arrays and scalars are leaves). */
function leafKeys(tree: unknown, prefix = ''): string[] {
  if (typeof tree !== 'object' || tree === null || Array.isArray(tree)) return prefix ? [prefix] : [];
  const entries = Object.entries(tree as Record<string, unknown>);
  if (entries.length === 0) return [];
  return entries.flatMap(([k, v]) => leafKeys(v, prefix ? `${prefix}.${k}` : k));
}

const valueFiles = [join(CHART, 'values.yaml'), ...readdirSync(join(CHART, 'ci')).map((f) => join(CHART, 'ci', f))];
const templates = readdirSync(join(CHART, 'templates')).map((f) => join(CHART, 'templates', f));
const APP_CHART = join(EXAMPLES, 'sidecar-app');
/** The example manifests, and the example app chart's files that are plain YAML (not templates). */
const exampleYamlFiles = [
  ...readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml')).map((f) => join(EXAMPLES, f)),
  join(APP_CHART, 'Chart.yaml'),
  join(APP_CHART, 'values.yaml'),
  ...readdirSync(join(APP_CHART, 'ci')).map((f) => join(APP_CHART, 'ci', f)),
];

describe('Helm chart', () => {
  it('every YAML file that is not a template parses', () => {
    for (const file of [join(CHART, 'Chart.yaml'), ...valueFiles, ...exampleYamlFiles]) {
      for (const doc of parseAllDocuments(read(file))) assert.equal(doc.errors.length, 0, `${file}: ${doc.errors.join('; ')}`);
    }
    const chart = parseYaml(read(join(CHART, 'Chart.yaml'))) as Record<string, string>;
    assert.equal(chart.apiVersion, 'v2');
    assert.equal(chart.appVersion, (JSON.parse(read(resolve(CHART, '../../package.json'))) as { version: string }).version);
    const values = parseYaml(read(join(CHART, 'values.yaml'))) as { image: { tag: string } };
    assert.equal(values.image.tag, chart.appVersion, 'image.tag is written out and equal to appVersion (the sidecar template needs it from an app chart)');
  });

  it('every key under config in the values files is a real gateway setting', () => {
    for (const file of valueFiles) {
      const values = parseYaml(read(file)) as { config?: unknown };
      for (const key of leafKeys(values.config ?? {})) assert.ok(settingKeys.has(key), `${file}: config.${key} is not a setting of the gateway`);
    }
    // The example app chart passes the gateway's values under its coze-session-gateway key.
    for (const file of [join(APP_CHART, 'values.yaml'), ...readdirSync(join(APP_CHART, 'ci')).map((f) => join(APP_CHART, 'ci', f))]) {
      const values = parseYaml(read(file)) as Record<string, { config?: unknown } | undefined>;
      for (const key of leafKeys(values['coze-session-gateway']?.config ?? {})) assert.ok(settingKeys.has(key), `${file}: config.${key} is not a setting of the gateway`);
    }
  });

  it('every environment variable the templates set exists in the config schema', () => {
    const text = templates.map(read).join('\n');
    const names = [...text.matchAll(/- name: ([A-Z][A-Z0-9_]+)\s*$/gm)].map((m) => m[1] as string);
    // In the example, only the gateway container's variables (the app has its own).
    const example = parseAllDocuments(read(join(EXAMPLES, 'sidecar-native.yaml'))).map((d) => d.toJS() as { kind?: string; spec?: { template: { spec: { initContainers: Array<{ env: Array<{ name: string }> }> } } } });
    for (const e of example.find((d) => d.kind === 'Deployment')?.spec?.template.spec.initContainers[0]?.env ?? []) names.push(e.name);
    assert.ok(names.length >= 8);
    for (const name of names) assert.ok(envNames.has(name), `${name} is not a gateway environment variable`);
  });

  it('the Deployment is hardened, probes the admin port, drains, and rolls on config changes', () => {
    const deployment = read(join(CHART, 'templates', 'deployment.yaml'));
    const values = parseYaml(read(join(CHART, 'values.yaml'))) as Record<string, Record<string, unknown>>;
    assert.deepEqual(values.securityContext, {
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    assert.match(deployment, /readinessProbe:\s*\n\s*httpGet: \{ path: \/readyz, port: admin \}/);
    assert.match(deployment, /livenessProbe:\s*\n\s*httpGet: \{ path: \/healthz, port: admin \}/);
    assert.match(deployment, /preStop:\s*\n\s*sleep:\s*\n\s*seconds: \{\{ \.Values\.preStopSleepSeconds \}\}/);
    assert.match(deployment, /terminationGracePeriodSeconds: \{\{ include "coze-session-gateway\.terminationGracePeriodSeconds" \. \}\}/);
    assert.match(read(join(CHART, 'templates', '_helpers.tpl')), /add \.Values\.preStopSleepSeconds \(default 30 \.Values\.config\.server\.shutdownGraceSeconds\) \.Values\.terminationGraceMarginSeconds/);
    assert.match(deployment, /annotations:\s*\n\s*# Roll the pods when the config or the secrets change\.\s*\n\s*\{\{- include "coze-session-gateway\.checksumAnnotations" \. \| nindent 8 \}\}/);
    assert.match(read(join(CHART, 'templates', '_helpers.tpl')), /define "coze-session-gateway\.checksumAnnotations"[\s\S]*checksum\/config: \{\{ include "coze-session-gateway\.configFile" \. \| sha256sum \}\}\s*\n\s*checksum\/secret:/);
    // The sidecar example's pods roll too.
    assert.match(read(join(APP_CHART, 'templates', 'deployment.yaml')), /annotations:[\s\S]*\{\{- include "coze-session-gateway\.sidecarPodAnnotations" \. \| nindent 8 \}\}/);
    assert.ok(!/containerPort: 9091[\s\S]*port: 9091/.test(read(join(CHART, 'templates', 'service.yaml'))), 'no admin port on the main Service');
  });

  it('has every object of a production chart', () => {
    const names = readdirSync(join(CHART, 'templates'));
    for (const file of ['_helpers.tpl', 'deployment.yaml', 'service.yaml', 'configmap.yaml', 'secret.yaml', 'serviceaccount.yaml', 'servicemonitor.yaml', 'pdb.yaml', 'hpa.yaml', 'networkpolicy.yaml', 'NOTES.txt']) {
      assert.ok(names.includes(file), file);
    }
    assert.ok(readdirSync(join(CHART, 'ci')).length >= 3);
  });

  it('the native sidecar example defines the Secret it mounts and runs the gateway on loopback with the trusted header', () => {
    const docs = parseAllDocuments(read(join(EXAMPLES, 'sidecar-native.yaml'))).map((d) => d.toJS() as Record<string, unknown>);
    const deployment = docs.find((d) => d.kind === 'Deployment') as { spec: { template: { spec: { initContainers: Array<Record<string, unknown>> } } } };
    const sidecar = deployment.spec.template.spec.initContainers[0] as { restartPolicy: string; env: Array<{ name: string; value: string }> };
    assert.equal(sidecar.restartPolicy, 'Always');
    const env = Object.fromEntries(sidecar.env.map((e) => [e.name, e.value]));
    assert.equal(env.HOST, '127.0.0.1');
    assert.equal(env.IDENTITY_TRUSTED_HEADER, 'x-forwarded-user');
    assert.equal(env.IDENTITY_TRUSTED_HEADER_ALLOW_FROM, '127.0.0.1/32,::1/128');
    const volumes = (deployment.spec.template.spec as unknown as { volumes: Array<{ secret?: { secretName: string } }> }).volumes;
    const secretName = volumes.find((v) => v.secret)?.secret?.secretName;
    assert.ok(docs.some((d) => d.kind === 'Secret' && (d.metadata as { name: string }).name === secretName), `the example defines the Secret ${secretName} it mounts`);
    const helper = read(join(CHART, 'templates', '_helpers.tpl'));
    assert.match(helper, /define "coze-session-gateway\.sidecarContainer"[\s\S]*restartPolicy: Always[\s\S]*value: 127\.0\.0\.1/);
  });
});
