import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { listSettings } from '../../src/config/schema.js';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const CHART = join(ROOT, 'helm/coze-session-gateway');
const APP_CHART = join(ROOT, 'helm/examples/sidecar-app');
const RENDERER = join(ROOT, 'test/packaging/helm-render');
// Debian's golang-* packages install their sources here; the renderer builds in GOPATH mode.
const GOPATH = '/usr/share/gocode';
const APP_VERSION = (parseYaml(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string }).appVersion;

const goMissing: string | false =
  spawnSync('go', ['version']).status !== 0
    ? 'go not found (apt-get install golang-go golang-github-masterminds-sprig-dev, as .ci/run does): skipping the chart rendering tests'
    : !existsSync(join(GOPATH, 'src/github.com/Masterminds/sprig'))
      ? `sprig not found in ${GOPATH} (apt-get install golang-github-masterminds-sprig-dev, as .ci/run does): skipping the chart rendering tests`
      : false;

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  [key: string]: unknown;
}
interface Rendered {
  objects: K8sObject[];
  notes: string;
  find<T = K8sObject>(kind: string, name?: string): T;
  has(kind: string): boolean;
}
interface Container {
  name: string;
  image: string;
  env: Array<{ name: string; value: string }>;
  securityContext: Record<string, unknown>;
  [key: string]: unknown;
}
interface PodSpec {
  securityContext: Record<string, unknown>;
  terminationGracePeriodSeconds: number;
  containers: Container[];
  initContainers?: Container[];
  volumes: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string; defaultMode: number } }>;
}
interface Deployment extends K8sObject {
  spec: { replicas?: number; template: { metadata: { annotations: Record<string, string> }; spec: PodSpec } };
}

/**
 * Issue 16: the chart rendered with Helm's own engine (text/template + sprig) by
 * test/packaging/helm-render, on every ci/ values file, with the result parsed and asserted.
 * YAML 1.1 as Kubernetes reads it (0440 is octal).
 */
describe('Helm chart, rendered', { skip: goMissing }, () => {
  let work: string;
  let binary: string;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'csg-helm-'));
    binary = join(work, 'helm-render');
    // Everything Go writes (its build cache included) stays in this test's own folder.
    await run('go', ['build', '-o', binary, '.'], {
      cwd: RENDERER,
      env: { PATH: process.env.PATH ?? '', HOME: work, GOPATH, GO111MODULE: 'off', GOCACHE: join(work, 'gocache'), GOENV: 'off', GOFLAGS: '', GOTOOLCHAIN: 'local', CGO_ENABLED: '0' },
    });
  });
  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  let extra = 0;
  /** Renders `chart` with the values files (paths, or objects written to a temp file). */
  async function render(chart: string, values: Array<string | Record<string, unknown>>, options: { kubeVersion?: string } = {}): Promise<Rendered> {
    const files = values.map((v) => {
      if (typeof v === 'string') return v;
      const file = join(work, `values-${++extra}.json`);
      writeFileSync(file, JSON.stringify(v));
      return file;
    });
    const args = [...files.flatMap((f) => ['-f', f]), '--kube-version', options.kubeVersion ?? '1.31.0', '--release', 'rel', '--namespace', 'apps', chart];
    const { stdout } = await run(binary, args, {});
    const out = JSON.parse(stdout) as { manifests: Record<string, string>; notes: string };
    const objects: K8sObject[] = [];
    for (const [file, text] of Object.entries(out.manifests)) {
      for (const doc of parseAllDocuments(text, { version: '1.1' })) {
        assert.equal(doc.errors.length, 0, `${file}: ${doc.errors.join('; ')}\n${text}`);
        const obj = doc.toJS() as K8sObject | null;
        if (!obj) continue;
        assert.ok(obj.apiVersion && obj.kind && obj.metadata?.name, `${file}: an object with apiVersion, kind and metadata.name`);
        objects.push(obj);
      }
    }
    const find = <T,>(kind: string, name?: string): T => {
      const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
      assert.ok(found, `a ${kind}${name ? ` named ${name}` : ''} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
      return found as T;
    };
    return { objects, notes: out.notes, find, has: (kind) => objects.some((o) => o.kind === kind) };
  }

  /** The render's error message (a `fail` or `required` in the chart). */
  async function renderError(chart: string, values: Array<string | Record<string, unknown>>, options: { kubeVersion?: string } = {}): Promise<string> {
    try {
      await render(chart, values, options);
    } catch (err) {
      return (err as { stderr?: string }).stderr ?? String(err);
    }
    assert.fail('the render should have failed');
  }

  const ci = (chart: string, name: string) => join(chart, 'ci', name);
  /** {a: {b: value}} from "a.b". */
  const nested = (key: string, value: unknown): Record<string, unknown> => key.split('.').reduceRight<unknown>((inner, part) => ({ [part]: inner }), value) as Record<string, unknown>;
  const envOf = (c: Container) => Object.fromEntries(c.env.map((e) => [e.name, e.value]));
  const full = 'rel-coze-session-gateway';

  it('every ci/ values file of both charts renders into valid Kubernetes objects', async () => {
    const scenarios = [...readdirSync(join(CHART, 'ci')).map((f) => ci(CHART, f)), ...readdirSync(join(APP_CHART, 'ci')).map((f) => ci(APP_CHART, f))];
    assert.ok(scenarios.length >= 5);
    for (const file of scenarios) {
      const rendered = await render(file.startsWith(APP_CHART) ? APP_CHART : CHART, [file]);
      assert.ok(rendered.has('ConfigMap'), `${file} renders the gateway's ConfigMap`);
    }
  });

  it('standalone (ci/default-values.yaml): hardened pods, probes on the admin port, a drain that fits, secrets as files, checksums', async () => {
    const r = await render(CHART, [ci(CHART, 'default-values.yaml')]);
    const deployment = r.find<Deployment>('Deployment', full);
    const pod = deployment.spec.template.spec;
    const gateway = pod.containers[0] as Container & { readinessProbe: unknown; livenessProbe: unknown; lifecycle: unknown; ports: unknown };
    assert.equal(deployment.spec.replicas, 2);
    assert.deepEqual(pod.securityContext, { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } });
    assert.deepEqual(gateway.securityContext, { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } });
    assert.equal(gateway.image, `ghcr.io/coze-session-gateway/coze-session-gateway:${APP_VERSION}`);
    assert.deepEqual(gateway.readinessProbe, { httpGet: { path: '/readyz', port: 'admin' }, periodSeconds: 5, failureThreshold: 2 });
    assert.deepEqual(gateway.livenessProbe, { httpGet: { path: '/healthz', port: 'admin' }, periodSeconds: 10, failureThreshold: 3 });
    assert.deepEqual(gateway.lifecycle, { preStop: { sleep: { seconds: 5 } } });
    assert.equal(pod.terminationGracePeriodSeconds, 45, 'preStop 5 + drain 30 + margin 10');
    const env = envOf(gateway);
    assert.equal(env.COZE_PRIVATE_KEY_FILE, '/etc/coze-session-gateway/secrets/private-key.pem');
    assert.ok(!Object.keys(env).some((k) => ['COZE_PRIVATE_KEY', 'IDENTITY_JWT_SECRET', 'REDIS_URL'].includes(k)), 'no secret as a plain variable');
    assert.deepEqual(pod.volumes.find((v) => v.secret)?.secret, { secretName: full, defaultMode: 0o400 });
    for (const key of ['checksum/config', 'checksum/secret']) assert.match(deployment.spec.template.metadata.annotations[key] ?? '', /^[0-9a-f]{64}$/, key);
    const service = r.find<K8sObject & { spec: { ports: Array<{ name: string }> } }>('Service', full);
    assert.deepEqual(service.spec.ports.map((p) => p.name), ['http'], 'the admin port is never on the Service');
    const config = parseYaml(r.find<K8sObject & { data: Record<string, string> }>('ConfigMap').data['config.yaml'] as string) as { coze: { appId: string } };
    assert.equal(config.coze.appId, '1127900106117', 'the app id stays a string');
    for (const kind of ['PodDisruptionBudget', 'HorizontalPodAutoscaler', 'NetworkPolicy', 'ServiceMonitor']) assert.ok(!r.has(kind), `${kind} is off by default`);
    assert.match(r.notes, /Note: without Redis, each replica \(2 replicas\) mints its own token per user/);
  });

  it('full (ci/full-values.yaml): ServiceMonitor, PDB, HPA, NetworkPolicy, Redis; NOTES say tokens are shared', async () => {
    const r = await render(CHART, [ci(CHART, 'full-values.yaml')]);
    assert.equal(r.find<Deployment>('Deployment').spec.replicas, undefined, 'the HPA owns the replica count');
    assert.deepEqual(r.find<K8sObject & { spec: Record<string, unknown> }>('HorizontalPodAutoscaler').spec.minReplicas, 2);
    assert.equal(r.find<K8sObject & { spec: { minAvailable: number } }>('PodDisruptionBudget').spec.minAvailable, 1);
    const policy = r.find<K8sObject & { spec: { ingress: Array<{ ports: Array<{ port: string }>; from: unknown[] }>; egress: Array<{ ports: Array<{ port: number }> }> } }>('NetworkPolicy').spec;
    assert.deepEqual(policy.ingress.find((i) => i.ports[0]?.port === 'http')?.from, [{ podSelector: { matchLabels: { app: 'my-app' } } }]);
    // The ServiceMonitor's Prometheus lives in another namespace: the example lets it reach the admin port.
    assert.deepEqual(policy.ingress.find((i) => i.ports[0]?.port === 'admin')?.from, [
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } },
    ]);
    assert.doesNotMatch(r.notes, /WARNING/);
    assert.ok(policy.egress.some((e) => e.ports[0]?.port === 6379), 'egress to Redis');
    const env = envOf(r.find<Deployment>('Deployment').spec.template.spec.containers[0] as Container);
    assert.equal(env.REDIS_URL_FILE, '/etc/coze-session-gateway/secrets/redis-url');
    assert.ok(r.has('ServiceMonitor'));
    assert.match(r.notes, /Replicas share tokens, mints and the rate limit through Redis/);
    assert.doesNotMatch(r.notes, /mints its own token/);
  });

  it('existing secret (ci/existing-secret-values.yaml): no Secret rendered, the pods mount the named one', async () => {
    const r = await render(CHART, [ci(CHART, 'existing-secret-values.yaml')]);
    assert.ok(!r.has('Secret'));
    assert.equal(r.find<Deployment>('Deployment').spec.template.spec.volumes.find((v) => v.secret)?.secret?.secretName, 'coze-gateway-secrets');
    assert.match(r.notes, /share tokens, mints and the rate limit through Redis/, 'existingSecretKeys.redis counts as Redis');
  });

  it('Redis Sentinel over TLS (ci/redis-sentinel-values.yaml): endpoints in the ConfigMap, passwords as files, the CA Secret mounted, egress to both ports', async () => {
    const r = await render(CHART, [ci(CHART, 'redis-sentinel-values.yaml')]);
    const pod = r.find<Deployment>('Deployment', full).spec.template.spec;
    const gateway = pod.containers[0] as Container & { volumeMounts: Array<{ name: string; mountPath: string; readOnly: boolean }> };
    const env = envOf(gateway);
    assert.deepEqual(
      Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('REDIS') || k.startsWith('CACHE'))),
      {
        CACHE_ENCRYPTION_KEY_FILE: '/etc/coze-session-gateway/secrets/redis-encryption-key',
        REDIS_PASSWORD_FILE: '/etc/coze-session-gateway/secrets/redis-password',
        REDIS_SENTINEL_PASSWORD_FILE: '/etc/coze-session-gateway/secrets/redis-sentinel-password',
        REDIS_TLS_CA_FILE: '/etc/coze-session-gateway/redis-ca/ca.pem',
      },
      'no REDIS_URL_FILE: the Sentinels are the topology',
    );
    assert.deepEqual(gateway.volumeMounts.find((m) => m.name === 'redis-ca'), { name: 'redis-ca', mountPath: '/etc/coze-session-gateway/redis-ca', readOnly: true });
    assert.deepEqual(
      pod.volumes.find((v) => v.name === 'redis-ca'),
      { name: 'redis-ca', secret: { secretName: 'redis-tls', items: [{ key: 'ca.crt', path: 'ca.pem' }] } },
    );
    const secret = r.find<K8sObject & { stringData: Record<string, string> }>('Secret', full).stringData;
    assert.deepEqual(Object.keys(secret).sort(), ['private-key.pem', 'redis-encryption-key', 'redis-password', 'redis-sentinel-password']);
    const config = parseYaml(r.find<K8sObject & { data: Record<string, string> }>('ConfigMap').data['config.yaml'] as string) as { cache: Record<string, unknown> };
    assert.deepEqual(config.cache, {
      redisSentinels: ['redis-node-0.redis-headless.redis.svc:26379', 'redis-node-1.redis-headless.redis.svc:26379', 'redis-node-2.redis-headless.redis.svc:26379'],
      redisSentinelName: 'mymaster',
      redisUsername: 'coze-gateway',
      redisTls: true,
    });
    const egress = r.find<K8sObject & { spec: { egress: Array<{ ports: Array<{ port: number }>; to?: unknown[] }> } }>('NetworkPolicy').spec.egress;
    assert.deepEqual(egress.find((e) => e.ports.some((p) => p.port === 26379))?.ports, [
      { port: 6379, protocol: 'TCP' },
      { port: 26379, protocol: 'TCP' },
    ]);
    assert.match(r.notes, /Replicas share tokens, mints and the rate limit through Redis \(Sentinel\)/);
  });

  it('Redis Cluster with an existing Secret (ci/redis-cluster-values.yaml): seeds in the ConfigMap, key and password from the named Secret', async () => {
    const r = await render(CHART, [ci(CHART, 'redis-cluster-values.yaml')]);
    assert.ok(!r.has('Secret'));
    const pod = r.find<Deployment>('Deployment', full).spec.template.spec;
    const env = envOf(pod.containers[0] as Container);
    assert.equal(env.CACHE_ENCRYPTION_KEY_FILE, '/etc/coze-session-gateway/secrets/redis-encryption-key');
    assert.equal(env.REDIS_PASSWORD_FILE, '/etc/coze-session-gateway/secrets/redis-password');
    assert.ok(!('REDIS_URL_FILE' in env) && !('REDIS_TLS_CA_FILE' in env) && !('REDIS_SENTINEL_PASSWORD_FILE' in env));
    assert.ok(!pod.volumes.some((v) => v.name === 'redis-ca'));
    const config = parseYaml(r.find<K8sObject & { data: Record<string, string> }>('ConfigMap').data['config.yaml'] as string) as { cache: { redisClusterNodes: string[] } };
    assert.equal(config.cache.redisClusterNodes.length, 3);
    assert.match(r.notes, /through Redis \(Cluster\)/);
  });

  it('secret-settings-never-in-configmap: every secret setting of the schema fails the render under config, and the secret.* key it names reaches the gateway as its *_FILE', async () => {
    const base = ci(CHART, 'default-values.yaml');
    // Marked secret by the schema only so that it may come from a file: a public key may sit in the ConfigMap.
    const publicSettings = ['identity.jwt.publicKey'];
    const secrets = listSettings().filter((s) => s.secret && !publicSettings.includes(s.key));
    assert.ok(secrets.length >= 9, secrets.map((s) => s.key).join(', '));
    for (const setting of secrets) {
      const error = await renderError(CHART, [base, { config: nested(setting.key, 'inline-secret') }]);
      const named = new RegExp(
        String.raw`config\.${setting.key.replaceAll('.', '\\.')} would put a secret in the ConfigMap: set secret\.(\w+) instead \(with existingSecret: the key ([\w.-]+) in that Secret(?: and existingSecretKeys\.(\w+): true)?\)`,
      ).exec(error);
      assert.ok(named, `${setting.key}: ${error}`);
      const [, value, file, existingKey] = named as unknown as [string, string, string, string | undefined];
      const path = `/etc/coze-session-gateway/secrets/${file}`;

      // The secret.* key it names is mounted and passed as the setting's own *_FILE variable.
      const inline = await render(CHART, [base, { secret: { redisEncryptionKey: 'k', [value]: `value-of-${value}` } }]);
      assert.equal(envOf(inline.find<Deployment>('Deployment').spec.template.spec.containers[0] as Container)[setting.fileEnv as string], path, `secret.${value} -> ${setting.fileEnv}`);
      assert.equal(inline.find<K8sObject & { stringData: Record<string, string> }>('Secret').stringData[file], `value-of-${value}`, `secret.${value} -> the Secret's ${file}`);

      // And so is the key of an existing Secret, declared in existingSecretKeys.
      const existing = await render(CHART, [base, { secret: { privateKey: null }, existingSecret: 'mine', existingSecretKeys: existingKey ? { [existingKey]: true } : {} }]);
      assert.equal(envOf(existing.find<Deployment>('Deployment').spec.template.spec.containers[0] as Container)[setting.fileEnv as string], path, `existingSecretKeys.${existingKey} -> ${setting.fileEnv}`);
    }
  });

  it('existing-secret-takes-no-inline-values: with existingSecret any secret.* value fails the render, naming it; existingSecretKeys without existingSecret too', async () => {
    const base = ci(CHART, 'default-values.yaml');
    const defaults = parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as { secret: Record<string, string>; existingSecretKeys: Record<string, boolean> };
    // No Secret is rendered with existingSecret: an inline value would reach no pod, and its *_FILE would point at a key the user's Secret may lack.
    for (const value of Object.keys(defaults.secret)) {
      const error = await renderError(CHART, [base, { existingSecret: 'mine', secret: { privateKey: null, [value]: 'inline' } }]);
      assert.ok(error.includes(`set either existingSecret or secret.${value}, not both: with existingSecret the chart renders no Secret, so the value would reach no pod; put it in the Secret mine under the key `), `${value}: ${error}`);
    }
    // The chart's own Secret holds only what secret.* sets: a key declared for an existing Secret would be missing.
    for (const key of Object.keys(defaults.existingSecretKeys)) {
      const error = await renderError(CHART, [base, { existingSecretKeys: { [key]: true } }]);
      assert.ok(error.includes(`existingSecretKeys.${key}: true declares keys of an existingSecret, which is not set`), `${key}: ${error}`);
    }
    // ci/existing-secret-values.yaml declares its keys the supported way, and renders.
    assert.ok((await render(CHART, [ci(CHART, 'existing-secret-values.yaml')])).has('Deployment'));
  });

  it('redis-ca-in-sidecar: the sidecar template mounts the Redis CA too', async () => {
    const r = await render(APP_CHART, [ci(APP_CHART, 'default-values.yaml'), { 'coze-session-gateway': { redisTlsCaSecret: { name: 'redis-tls' }, config: { cache: { redisClusterNodes: ['redis:6379'], redisTls: true } }, secret: { redisEncryptionKey: 'k' } } }]);
    const pod = r.find<Deployment>('Deployment').spec.template.spec;
    const sidecar = pod.initContainers?.[0] as Container & { volumeMounts: Array<{ name: string }> };
    assert.equal(envOf(sidecar).REDIS_TLS_CA_FILE, '/etc/coze-session-gateway/redis-ca/ca.pem');
    assert.ok(sidecar.volumeMounts.some((m) => m.name === 'redis-ca'));
    assert.deepEqual(pod.volumes.find((v) => v.name === 'redis-ca')?.secret, { secretName: 'redis-tls', items: [{ key: 'ca.crt', path: 'ca.pem' }] });
  });

  it('networkpolicy-empty-means-namespace: empty ingressFrom and metricsFrom admit pods of this namespace only, never any source', async () => {
    const r = await render(CHART, [ci(CHART, 'default-values.yaml'), { networkPolicy: { enabled: true } }]);
    const ingress = r.find<K8sObject & { spec: { ingress: Array<{ ports: Array<{ port: string }>; from?: unknown[] }> } }>('NetworkPolicy').spec.ingress;
    assert.deepEqual(
      ingress.map((i) => [i.ports[0]?.port, i.from]),
      [
        ['http', [{ podSelector: {} }]],
        ['admin', [{ podSelector: {} }]],
      ],
    );
  });

  it('networkpolicy-egress-reaches-the-idp: the JWKS URL\'s port is open (an in-cluster Keycloak on 8080), Coze\'s own ports, and extraEgress as given', async () => {
    type Egress = Array<{ ports?: Array<{ port: number; protocol: string }>; to?: unknown[] }>;
    const egressOf = (r: Rendered) => r.find<K8sObject & { spec: { egress: Egress } }>('NetworkPolicy').spec.egress;
    const keycloak = { config: { identity: { jwt: { jwksUrl: 'http://keycloak.auth.svc:8080/realms/app/protocol/openid-connect/certs' } } }, networkPolicy: { enabled: true } };
    const egress = egressOf(await render(CHART, [ci(CHART, 'default-values.yaml'), keycloak]));
    // /readyz waits for one JWKS fetch: without this rule the pods never become Ready. Any destination: the IdP is a Service in the cluster.
    assert.deepEqual(egress.find((e) => e.ports?.some((p) => p.port === 8080)), { ports: [{ port: 8080, protocol: 'TCP' }] });
    assert.deepEqual(egress.find((e) => e.ports?.some((p) => p.port === 443))?.to, [{ ipBlock: { cidr: '0.0.0.0/0' } }]);

    // An https URL without a port is 443, which cozeEgressCidrs may have narrowed to Coze's ranges; jwksEgressTo narrows the IdP's rule.
    const auth = [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'auth' } } }];
    const narrowed = egressOf(await render(CHART, [ci(CHART, 'default-values.yaml'), { networkPolicy: { enabled: true, cozeEgressCidrs: ['203.0.113.0/24'], jwksEgressTo: auth } }]));
    assert.deepEqual(narrowed.slice(1), [
      { ports: [{ port: 443, protocol: 'TCP' }], to: [{ ipBlock: { cidr: '203.0.113.0/24' } }] },
      { ports: [{ port: 443, protocol: 'TCP' }], to: auth },
    ]);

    // An https JWKS with cozeEgressCidrs narrowed and no jwksEgressTo: a rule to anywhere on 443 would undo the narrowing.
    const error = await renderError(CHART, [ci(CHART, 'default-values.yaml'), { networkPolicy: { enabled: true, cozeEgressCidrs: ['203.0.113.0/24'] } }]);
    assert.ok(error.includes('identity.jwt.jwksUrl is on port 443, which networkPolicy.cozeEgressCidrs narrows for Coze: set networkPolicy.jwksEgressTo'), error);
    // With Coze's 443 open to any destination, the IdP needs no rule of its own: none is added.
    const open = egressOf(await render(CHART, [ci(CHART, 'default-values.yaml'), { networkPolicy: { enabled: true } }]));
    assert.deepEqual(open.filter((e) => e.ports?.some((p) => p.port === 443)), [{ ports: [{ port: 443, protocol: 'TCP' }], to: [{ ipBlock: { cidr: '0.0.0.0/0' } }] }]);

    // Coze behind an egress proxy on its own port, and extra rules appended as given.
    const extra = { ports: [{ port: 8443, protocol: 'TCP' }], to: [{ podSelector: { matchLabels: { app: 'audit-sink' } } }] };
    const proxied = egressOf(
      await render(CHART, [ci(CHART, 'default-values.yaml'), { config: { coze: { baseUrl: 'http://coze-proxy.egress.svc:3128', wsBaseUrl: 'ws://coze-proxy.egress.svc:3129' } }, networkPolicy: { enabled: true, extraEgress: [extra] } }]),
    );
    assert.deepEqual(proxied[1]?.ports, [
      { port: 443, protocol: 'TCP' },
      { port: 3128, protocol: 'TCP' },
      { port: 3129, protocol: 'TCP' },
    ]);
    assert.deepEqual(proxied.at(-1), extra);
  });

  it('servicemonitor-behind-networkpolicy-warns: a ServiceMonitor with the NetworkPolicy on and metricsFrom empty gets a NOTES warning (Prometheus could not scrape)', async () => {
    const both = { metrics: { serviceMonitor: { enabled: true } }, networkPolicy: { enabled: true } };
    const r = await render(CHART, [ci(CHART, 'default-values.yaml'), both]);
    assert.match(r.notes, /WARNING: the NetworkPolicy admits only pods of namespace apps to the admin port \(networkPolicy\.metricsFrom\s+is empty\), so a Prometheus in another namespace cannot scrape/);
    const peers = await render(CHART, [ci(CHART, 'default-values.yaml'), both, { networkPolicy: { metricsFrom: [{ namespaceSelector: {} }] } }]);
    assert.doesNotMatch(peers.notes, /WARNING/);
    assert.doesNotMatch((await render(CHART, [ci(CHART, 'default-values.yaml'), { metrics: both.metrics }])).notes, /WARNING/, 'no NetworkPolicy, nothing to warn of');
  });

  it('ports-follow-config: config.server.port and config.admin.port reach the container (PORT and ADMIN_PORT beat the file), its ports, the metrics Service and the NOTES', async () => {
    const ports = { config: { server: { port: 8081 }, admin: { port: 9100 } }, metrics: { serviceMonitor: { enabled: true } } };
    const r = await render(CHART, [ci(CHART, 'default-values.yaml'), ports]);
    const gateway = r.find<Deployment>('Deployment').spec.template.spec.containers[0] as Container & { ports: Array<{ name: string; containerPort: number }> };
    assert.deepEqual({ PORT: envOf(gateway).PORT, ADMIN_PORT: envOf(gateway).ADMIN_PORT }, { PORT: '8081', ADMIN_PORT: '9100' });
    assert.deepEqual(gateway.ports, [
      { name: 'http', containerPort: 8081 },
      { name: 'admin', containerPort: 9100 },
    ]);
    // The Services and the probes name the ports, so they follow.
    assert.equal(r.find<K8sObject & { spec: { ports: Array<{ targetPort: string }> } }>('Service', full).spec.ports[0]?.targetPort, 'http');
    assert.deepEqual(r.find<K8sObject & { spec: { ports: unknown[] } }>('Service', `${full}-metrics`).spec.ports, [{ name: 'admin', port: 9100, targetPort: 'admin' }]);
    assert.match(r.notes, /on the admin port 9100/);
    // Unset: the gateway's defaults, as before.
    const plain = envOf((await render(CHART, [ci(CHART, 'default-values.yaml')])).find<Deployment>('Deployment').spec.template.spec.containers[0] as Container);
    assert.deepEqual({ PORT: plain.PORT, ADMIN_PORT: plain.ADMIN_PORT }, { PORT: '8080', ADMIN_PORT: '9091' });
    // In sidecar mode sidecar.port and sidecar.adminPort set them: a different config port would be ignored, so it is refused.
    const error = await renderError(CHART, [ci(CHART, 'sidecar-values.yaml'), { config: { server: { port: 8081 } } }]);
    assert.ok(error.includes('in sidecar mode the gateway listens on sidecar.port (8080), not config.server.port (8081): set sidecar.port instead'), error);
  });

  it('sidecar mode, chart side (ci/sidecar-values.yaml): only the ConfigMap and the Secret', async () => {
    const r = await render(CHART, [ci(CHART, 'sidecar-values.yaml')]);
    assert.deepEqual(r.objects.map((o) => o.kind).sort(), ['ConfigMap', 'Secret']);
    assert.match(r.notes, /coze-session-gateway\.sidecarContainer/);
  });

  it('sidecar-from-parent-chart: included with an app chart\'s own context, the sidecar takes the gateway\'s image, ports and Secret, never the app\'s', async () => {
    const r = await render(APP_CHART, [ci(APP_CHART, 'default-values.yaml')]);
    assert.deepEqual(r.objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), ['ConfigMap/rel-coze-session-gateway', 'Deployment/rel-my-app', 'Secret/rel-coze-session-gateway']);
    const pod = r.find<Deployment>('Deployment').spec.template.spec;
    const sidecar = pod.initContainers?.[0] as Container & { restartPolicy: string };
    assert.equal(sidecar.name, 'coze-session-gateway');
    assert.equal(sidecar.restartPolicy, 'Always', 'a native sidecar');
    assert.equal(sidecar.image, `ghcr.io/coze-session-gateway/coze-session-gateway:${APP_VERSION}`, "the gateway's image, not my-registry/my-app");
    const env = envOf(sidecar);
    assert.deepEqual(
      { HOST: env.HOST, PORT: env.PORT, ADMIN_PORT: env.ADMIN_PORT, IDENTITY_TRUSTED_HEADER: env.IDENTITY_TRUSTED_HEADER, IDENTITY_TRUSTED_HEADER_ALLOW_FROM: env.IDENTITY_TRUSTED_HEADER_ALLOW_FROM },
      { HOST: '127.0.0.1', PORT: '8080', ADMIN_PORT: '9091', IDENTITY_TRUSTED_HEADER: 'x-forwarded-user', IDENTITY_TRUSTED_HEADER_ALLOW_FROM: '127.0.0.1/32,::1/128' },
    );
    // The volumes name the objects the gateway chart rendered, and the key is readable by the gateway.
    const secretVolume = pod.volumes.find((v) => v.name === 'coze-gateway-secrets')?.secret;
    assert.equal(secretVolume?.secretName, r.find('Secret').metadata.name);
    assert.equal(pod.volumes.find((v) => v.name === 'coze-gateway-config')?.configMap?.name, r.find('ConfigMap').metadata.name);
    assert.equal(secretVolume?.defaultMode, 0o440, 'group-readable');
    assert.equal(pod.securityContext.fsGroup, sidecar.securityContext.runAsGroup, "fsGroup is the gateway's group, so uid 10001 can read the key");

    // The plain-manifest example is what the template renders.
    const example = parseAllDocuments(readFileSync(join(ROOT, 'helm/examples/sidecar-native.yaml'), 'utf8'), { version: '1.1' }).map((d) => d.toJS() as K8sObject);
    const examplePod = (example.find((d) => d.kind === 'Deployment') as Deployment).spec.template.spec;
    assert.deepEqual(examplePod.initContainers?.[0], sidecar, 'helm/examples/sidecar-native.yaml is what the sidecar template renders');
    assert.equal(examplePod.securityContext.fsGroup, 10001);
    assert.equal(examplePod.volumes.find((v) => v.secret)?.secret?.defaultMode, 0o440);
  });

  it('sidecar-pods-roll-on-gateway-changes: sidecarPodAnnotations hashes the gateway\'s ConfigMap and Secret, and the example pod pulls with the gateway\'s imagePullSecrets', async () => {
    const annotationsOf = async (values: Record<string, unknown>) =>
      (await render(APP_CHART, [ci(APP_CHART, 'default-values.yaml'), { 'coze-session-gateway': values }])).find<Deployment>('Deployment').spec.template.metadata.annotations;
    const before = await annotationsOf({});
    for (const key of ['checksum/config', 'checksum/secret']) assert.match(before[key] ?? '', /^[0-9a-f]{64}$/, key);
    const config = await annotationsOf({ config: { policy: { enforceUserId: false } } });
    assert.notEqual(config['checksum/config'], before['checksum/config'], 'a config change rolls the app pods');
    assert.equal(config['checksum/secret'], before['checksum/secret']);
    const secret = await annotationsOf({ secret: { privateKey: 'another PEM' } });
    assert.notEqual(secret['checksum/secret'], before['checksum/secret'], 'a Secret change rolls the app pods');
    assert.equal(secret['checksum/config'], before['checksum/config']);

    // Standalone pods roll on the same changes.
    const standalone = async (values: Record<string, unknown>) => (await render(CHART, [ci(CHART, 'default-values.yaml'), values])).find<Deployment>('Deployment').spec.template.metadata.annotations;
    const base = await standalone({});
    assert.notEqual((await standalone({ config: { policy: { enforceUserId: false } } }))['checksum/config'], base['checksum/config']);
    assert.notEqual((await standalone({ secret: { sessionHmacSecret: 'x'.repeat(32) } }))['checksum/secret'], base['checksum/secret']);

    // In sidecar mode the gateway chart renders no pod: its pull secrets go on the app's pod.
    const pulled = await render(APP_CHART, [ci(APP_CHART, 'default-values.yaml'), { imagePullSecrets: [{ name: 'app-registry' }], 'coze-session-gateway': { imagePullSecrets: [{ name: 'gateway-registry' }] } }]);
    assert.deepEqual((pulled.find<Deployment>('Deployment').spec.template.spec as PodSpec & { imagePullSecrets: unknown }).imagePullSecrets, [{ name: 'app-registry' }, { name: 'gateway-registry' }]);
    assert.match((await render(CHART, [ci(CHART, 'sidecar-values.yaml'), { imagePullSecrets: [{ name: 'gateway-registry' }] }])).notes, /The app's pod pulls the gateway's image: list gateway-registry in its imagePullSecrets/);
  });

  it('reloaded-files-roll-no-pod: budgetOverrides is a second ConfigMap key that budgets.overridesFile names, mounted without subPath; it and the API keys file change without a rollout', async () => {
    const base = ci(CHART, 'default-values.yaml');
    const overrides = [{ subject: 'alice@example.com', tokensPerDay: 200000 }, { subject: 'load-test', source: 'api_key', requestsPerDay: 'unlimited' }];
    const r = await render(CHART, [base, { budgetOverrides: overrides }]);
    const data = r.find<K8sObject & { data: Record<string, string> }>('ConfigMap').data;
    assert.ok(data['budget-overrides.yaml'], `a budget-overrides.yaml key among ${Object.keys(data).join(', ')}`);
    assert.deepEqual(parseYaml(data['budget-overrides.yaml']), overrides);
    const config = parseYaml(data['config.yaml'] as string) as { budgets: { overridesFile: string } };
    assert.equal(config.budgets.overridesFile, '/etc/coze-session-gateway/config/budget-overrides.yaml');
    const pod = r.find<Deployment>('Deployment').spec.template.spec;
    const mounts = (pod.containers[0] as Container & { volumeMounts: Array<{ name: string; mountPath: string; subPath?: string }> }).volumeMounts;
    assert.equal(mounts.find((m) => m.name === 'config')?.mountPath, '/etc/coze-session-gateway/config', 'the whole ConfigMap, so the file is next to config.yaml');
    assert.deepEqual(pod.volumes.find((v) => v.name === 'config')?.configMap, { name: full }, 'every key of the ConfigMap, no items list');

    // Kubernetes updates a ConfigMap or Secret volume in place only when it is not mounted through subPath.
    const sidecarPod = (await render(APP_CHART, [ci(APP_CHART, 'default-values.yaml')])).find<Deployment>('Deployment').spec.template.spec;
    for (const c of [...pod.containers, ...(sidecarPod.initContainers ?? [])] as Array<Container & { volumeMounts: Array<{ subPath?: string }> }>) {
      assert.ok(c.volumeMounts.every((m) => m.subPath === undefined), `${c.name}: no subPath mount`);
    }

    // The gateway reloads both files itself: editing them rolls no pod. Setting one (a new setting or variable) does.
    const annotations = async (values: Record<string, unknown>) => (await render(CHART, [base, values])).find<Deployment>('Deployment').spec.template.metadata.annotations;
    const edited = await annotations({ budgetOverrides: [{ subject: 'alice@example.com', tokensPerDay: 0 }] });
    assert.deepEqual(edited, r.find<Deployment>('Deployment').spec.template.metadata.annotations, 'an edited overrides list rolls no pod');
    assert.notEqual((await annotations({}))['checksum/config'], edited['checksum/config'], 'turning overrides on changes the config file');
    const keys = (subject: string) => ({ secret: { apiKeys: `- {subject: ${subject}, sha256: ${'a'.repeat(64)}}` } });
    assert.deepEqual(await annotations(keys('alice')), await annotations(keys('bob')), 'an edited API keys file rolls no pod');

    const error = await renderError(CHART, [base, { budgetOverrides: overrides, config: { budgets: { overridesFile: '/data/overrides.yaml' } } }]);
    assert.ok(error.includes('set either budgetOverrides or config.budgets.overridesFile, not both'), error);
  });

  it('chart-guards-fail-the-render on contradictory or missing values, naming them', async () => {
    const base = ci(CHART, 'default-values.yaml');
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['PDB not below replicaCount', { pdb: { enabled: true, minAvailable: 2 } }, 'pdb.minAvailable (2) must be below replicaCount (2), or no pod could ever be evicted'],
      ['PDB not below the HPA floor', { pdb: { enabled: true, minAvailable: 3 }, replicaCount: 5, autoscaling: { enabled: true, minReplicas: 3 } }, 'pdb.minAvailable (3) must be below autoscaling.minReplicas (3)'],
      ['PDB at 100%', { pdb: { enabled: true, minAvailable: '100%' } }, 'pdb.minAvailable 100% leaves no pod evictable'],
      ['PDB not a number', { pdb: { enabled: true, minAvailable: 'half' } }, 'pdb.minAvailable must be a number or a percentage such as 50%, not "half"'],
      ['HPA min above max', { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 3 } }, 'autoscaling.minReplicas must not exceed autoscaling.maxReplicas'],
      ['inline key and existingSecret', { existingSecret: 'mine' }, 'set either existingSecret or secret.privateKey, not both'],
      ['no key at all', { secret: { privateKey: '' } }, 'secret.privateKey (the Coze OAuth app PEM) or existingSecret is required'],
      ['no app id', { config: { coze: { appId: '' } } }, 'config.coze.appId is required'],
      ['no identity source', { config: { identity: { jwt: { jwksUrl: null } } } }, 'configure an identity source'],
      ['a JWT source without iss', { config: { identity: { jwt: { issuer: null } } } }, 'config.identity.jwt.issuer is required with a JWT source'],
      ['a JWT source without aud', { config: { identity: { jwt: { audience: null } } } }, 'config.identity.jwt.audience is required with a JWT source'],
      ['an HS secret without iss and aud', { config: { identity: { jwt: { jwksUrl: null, issuer: null, audience: null } } }, secret: { identityJwtSecret: 's'.repeat(32) } }, 'config.identity.jwt.issuer is required with a JWT source'],
      ['Redis without a key', { secret: { redisUrl: 'redis://r:6379' } }, 'secret.redisUrl needs secret.redisEncryptionKey'],
      ['Cluster without a key', { config: { cache: { redisClusterNodes: ['r:6379'] } } }, 'config.cache.redisClusterNodes needs secret.redisEncryptionKey'],
      ['two Redis topologies', { secret: { redisUrl: 'redis://r:6379', redisEncryptionKey: 'k' }, config: { cache: { redisSentinels: ['s:26379'], redisSentinelName: 'm' } } }, 'set only one Redis topology: secret.redisUrl and config.cache.redisSentinels'],
      ['Sentinels without a master name', { secret: { redisEncryptionKey: 'k' }, config: { cache: { redisSentinels: ['s:26379'] } } }, 'config.cache.redisSentinels needs config.cache.redisSentinelName'],
      ['a CA without TLS (Cluster)', { secret: { redisEncryptionKey: 'k' }, config: { cache: { redisClusterNodes: ['r:6379'] } }, redisTlsCaSecret: { name: 'redis-tls' } }, 'redisTlsCaSecret needs config.cache.redisTls: true'],
      ['a CA without TLS (one node)', { secret: { redisUrl: 'redis://r:6379', redisEncryptionKey: 'k' }, redisTlsCaSecret: { name: 'redis-tls' } }, 'redisTlsCaSecret needs TLS: secret.redisUrl must be a rediss:// URL'],
      ['a Redis password in the ConfigMap', { config: { cache: { redisPassword: 'pw' } } }, 'config.cache.redisPassword would put a secret in the ConfigMap: set secret.redisPassword instead (with existingSecret: the key redis-password in that Secret and existingSecretKeys.redisPassword: true)'],
      ['a misspelt secret', { secret: { previousEncryptionKey: 'k' } }, 'secret.previousEncryptionKey is not a secret this chart knows'],
      ['a misspelt existing key', { existingSecretKeys: { sessionHmac: true } }, 'existingSecretKeys.sessionHmac is not a key this chart knows'],
      ['unknown mode', { mode: 'daemonset' }, 'mode must be standalone or sidecar, not daemonset'],
      // A values file's unquoted number is a float to Helm: long ids are rounded, and 1127900106117 renders as 1.127900106117e+12.
      ['an unquoted app id', { config: { coze: { appId: 1127900106117 } } }, 'config.coze.appId must be quoted in a values file'],
      ['an unquoted bot id', { config: { policy: { allowedBotIds: ['7351234567890123456', 7351234567890123] } } }, 'config.policy.allowedBotIds must be quoted in a values file'],
    ];
    for (const [name, values, message] of cases) {
      const error = await renderError(CHART, [base, values]);
      assert.ok(error.includes(message), `${name}: expected "${message}" in: ${error}`);
    }
    // The audience opt-out, said explicitly, renders.
    assert.ok((await render(CHART, [base, { config: { identity: { jwt: { audience: null, allowMissingAudience: true } } } }])).has('Deployment'));
    // A percentage below 100% is fine.
    assert.equal((await render(CHART, [base, { pdb: { enabled: true, minAvailable: '50%' } }])).find<K8sObject & { spec: { minAvailable: string } }>('PodDisruptionBudget').spec.minAvailable, '50%');
    // From an app chart, an emptied image tag cannot silently fall back to the app's version.
    const tagless = await renderError(APP_CHART, [ci(APP_CHART, 'default-values.yaml'), { 'coze-session-gateway': { image: { tag: '' } } }]);
    assert.ok(tagless.includes("coze-session-gateway: image.tag is empty; set it (an app chart cannot see this chart's appVersion)"), tagless);
  });

  it('prestop-zero-means-no-hook: preStopSleepSeconds 0 renders no preStop hook (a 0 s sleep is refused before Kubernetes 1.33), and the grace period drops by the same', async () => {
    const r = await render(CHART, [ci(CHART, 'default-values.yaml'), { preStopSleepSeconds: 0 }]);
    const pod = r.find<Deployment>('Deployment').spec.template.spec;
    assert.equal((pod.containers[0] as Container & { lifecycle?: unknown }).lifecycle, undefined);
    assert.equal(pod.terminationGracePeriodSeconds, 40, 'drain 30 + margin 10');
    assert.match(r.notes, /Pods drain for 40 s on shutdown \(no preStop \+ drain 30 s \+ margin\)/);
    const error = await renderError(CHART, [ci(CHART, 'default-values.yaml'), { preStopSleepSeconds: -1 }]);
    assert.ok(error.includes('preStopSleepSeconds must be a whole number of seconds, 0 for no preStop hook, not -1'), error);
  });

  it('kubeVersion: Kubernetes before 1.30 (no preStop sleep action) is refused; provider builds of 1.30 pass', async () => {
    const error = await renderError(CHART, [ci(CHART, 'default-values.yaml')], { kubeVersion: '1.29.9' });
    assert.ok(error.includes('chart requires kubeVersion: >=1.30.0-0 which is incompatible with Kubernetes v1.29.9'), error);
    assert.ok((await render(CHART, [ci(CHART, 'default-values.yaml')], { kubeVersion: '1.30.2-eks-1' })).has('Deployment'));
  });
});

function run(command: string, args: string[], options: { cwd?: string; env?: Record<string, string> }): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { ...options, maxBuffer: 16 * 1024 * 1024, timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr }));
      else resolve({ stdout, stderr });
    });
  });
}
