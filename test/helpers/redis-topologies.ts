import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import tls from 'node:tls';
import { Redis } from 'ioredis';
import { redisAclRule } from '../../src/cache/redis-topology.js';
import { freePort } from './cli-process.js';
import { redisMissing, redisServerBinary } from './redis.js';
import { writeTestCertificates } from './tls-certs.js';

/**
 * Real Redis topologies for the issue 19 suites, built from Debian's redis-server (and
 * redis-cli for the cluster) in temporary folders on free loopback ports: one node with TLS
 * and an ACL user, a master with a replica and three Sentinels, and a three-master cluster.
 * Every process is killed by `stop()`, by a failed start, and at the latest when this
 * process exits.
 */

/** redis-cli: CSG_REDIS_CLI when set (a path that does not exist shows a machine without it), else PATH. */
function findRedisCli(): string | undefined {
  const override = process.env.CSG_REDIS_CLI;
  const candidates = override !== undefined ? [override] : [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/local/bin'].filter(Boolean).map((dir) => join(dir, 'redis-cli'));
  return candidates.find((path) => existsSync(path) && spawnSync(path, ['--version']).status === 0);
}
const REDIS_CLI = redisMissing ? undefined : findRedisCli();

/** `describe(name, { skip: clusterMissing })`: the cluster needs redis-cli too (redis-tools). */
export const clusterMissing: string | false =
  redisMissing ||
  (REDIS_CLI
    ? false
    : process.env.CSG_REDIS_CLI !== undefined
      ? `redis-cli not usable at CSG_REDIS_CLI=${process.env.CSG_REDIS_CLI}: skipping the Redis Cluster suite`
      : 'redis-cli not found on PATH (apt-get install redis-tools, as .ci/run does): skipping the Redis Cluster suite');

/** The ACL user every topology's tests give the gateway: exactly the commands it needs. */
export const GATEWAY_USER = 'gw';
export const SENTINEL_MASTER = 'mymaster';

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

interface Node {
  port: number;
  proc: ChildProcess;
  /** Resolves once the process has exited. */
  stop(signal: NodeJS.Signals): Promise<void>;
}

async function startNode(args: string[], port: number, options: { tls?: { caFile: string } } = {}): Promise<Node> {
  const binary = redisServerBinary() as string;
  const proc = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(proc);
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  void exited.then(() => live.delete(proc));
  const stop = async (signal: NodeJS.Signals) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited;
  };
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) break;
    if (await answers(port, options.tls?.caFile)) return { port, proc, stop };
    await sleep(25);
  }
  await stop('SIGKILL');
  throw new Error(`redis-server ${args.join(' ')} did not start on port ${port}: ${stderr}`);
}

/** The port speaks RESP: any reply (+PONG, or -NOAUTH when a password is needed) counts. */
function answers(port: number, caFile?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = caFile ? tls.connect({ port, host: '127.0.0.1', ca: readCa(caFile) }) : net.connect(port, '127.0.0.1');
    socket.once(caFile ? 'secureConnect' : 'connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => {
      socket.destroy();
      resolve(/^[+-]/.test(d.toString()));
    });
    socket.once('error', () => resolve(false));
  });
}
const readCa = (file: string) => readFileSync(file, 'utf8');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const password = () => randomBytes(12).toString('hex');

/** Lines common to every data node: no persistence, loopback only, its own folder. */
const dataNode = (port: number, dir: string) => [`port ${port}`, 'bind 127.0.0.1', 'save ""', 'appendonly no', `dir ${dir}`];

function writeConf(dir: string, name: string, lines: string[]): string {
  const file = join(dir, name);
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  return file;
}

/** Runs `start`; if it throws, stops what it had started before rethrowing. */
async function startAll<T>(dir: string, nodes: Node[], start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface TlsRedis {
  /** rediss://127.0.0.1:PORT, no credentials (they go in cache.redisUsername/redisPassword). */
  url: string;
  caFile: string;
  /** The CA of another, unrelated authority: a gateway given it must refuse the server. */
  otherCaFile: string;
  username: string;
  passwordFile: string;
  /** An admin connection (the default user), for checks the gateway's user may not make. */
  admin(): Redis;
  stop(): Promise<void>;
}

/** One node that speaks only TLS and admits the gateway's user with the narrowest ACL. */
export async function startTlsRedis(keyPrefix = 'csg'): Promise<TlsRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'csg-redis-tls-'));
  const nodes: Node[] = [];
  return startAll(dir, nodes, async () => {
    const certs = await writeTestCertificates(dir);
    const other = await writeTestCertificates(dir, 'unrelated');
    const port = await freePort();
    const gatewayPassword = password();
    const adminPassword = password();
    const conf = writeConf(dir, 'redis.conf', [
      ...dataNode(0, dir),
      `tls-port ${port}`,
      `tls-cert-file ${certs.certFile}`,
      `tls-key-file ${certs.keyFile}`,
      `tls-ca-cert-file ${certs.caFile}`,
      'tls-auth-clients no',
      `user default on >${adminPassword} ~* &* +@all`,
      redisAclRule(GATEWAY_USER, gatewayPassword, keyPrefix),
    ]);
    nodes.push(await startNode([conf], port, { tls: { caFile: certs.caFile } }));
    const passwordFile = join(dir, 'gateway-password');
    writeFileSync(passwordFile, gatewayPassword, { mode: 0o600 });
    const admins: Redis[] = [];
    return {
      url: `rediss://127.0.0.1:${port}`,
      caFile: certs.caFile,
      otherCaFile: other.caFile,
      username: GATEWAY_USER,
      passwordFile,
      admin() {
        const r = new Redis({ port, host: '127.0.0.1', password: adminPassword, tls: { ca: readCa(certs.caFile) } });
        admins.push(r);
        return r;
      },
      async stop() {
        for (const r of admins) r.disconnect();
        await Promise.all(nodes.map((n) => n.stop('SIGTERM')));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  });
}

export interface SentinelSet {
  /** The three Sentinels, as host:port. */
  sentinels: string[];
  masterPort: number;
  replicaPort: number;
  /** requirepass of the master and the replica. */
  password: string;
  /** requirepass of the Sentinels. */
  sentinelPassword: string;
  /** SIGKILL to the current master: the Sentinels promote the replica. */
  killMaster(): Promise<void>;
  /** What the Sentinels name as the master now, host:port. */
  masterAddress(): Promise<string>;
  /** The master each Sentinel names, host:port. */
  namedMasters(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * A master, its replica and three Sentinels (quorum 2) with short timers, so a failover takes
 * a second or two: the master is taken for down after 500 ms without an answer.
 */
export async function startSentinelSet(): Promise<SentinelSet> {
  const dir = mkdtempSync(join(tmpdir(), 'csg-redis-sentinel-'));
  const nodes: Node[] = [];
  const clients: Redis[] = [];
  return startAll(dir, nodes, async () => {
    const pass = password();
    const sentinelPass = password();
    const [masterPort, replicaPort, ...sentinelPorts] = await Promise.all([0, 1, 2, 3, 4].map(() => freePort())) as [number, number, number, number, number];
    const auth = [`requirepass ${pass}`, `masterauth ${pass}`];
    const master = await startNode([writeConf(dir, 'master.conf', [...dataNode(masterPort, dir), ...auth])], masterPort);
    nodes.push(master);
    mkdirIn(dir, 'replica');
    const replica = await startNode([writeConf(dir, 'replica.conf', [...dataNode(replicaPort, join(dir, 'replica')), ...auth, `replicaof 127.0.0.1 ${masterPort}`])], replicaPort);
    nodes.push(replica);
    const admin = (port: number, pw: string) => {
      const r = new Redis({ port, host: '127.0.0.1', password: pw, lazyConnect: false, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
      r.on('error', () => undefined);
      clients.push(r);
      return r;
    };
    // Sentinels learn about the replica from the master's INFO, asked as they start: link it first.
    await until(async () => /master_link_status:up/.test(await admin(replicaPort, pass).info('replication')), 10_000, 'the replica to sync');
    for (const port of sentinelPorts) {
      mkdirIn(dir, `sentinel-${port}`);
      const conf = writeConf(dir, `sentinel-${port}.conf`, [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${join(dir, `sentinel-${port}`)}`,
        `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${masterPort} 2`,
        `sentinel auth-pass ${SENTINEL_MASTER} ${pass}`,
        `sentinel down-after-milliseconds ${SENTINEL_MASTER} 500`,
        `sentinel failover-timeout ${SENTINEL_MASTER} 2000`,
        `sentinel parallel-syncs ${SENTINEL_MASTER} 1`,
        `requirepass ${sentinelPass}`,
        `sentinel sentinel-pass ${sentinelPass}`,
      ]);
      nodes.push(await startNode([conf, '--sentinel'], port));
    }
    const sentinelClients = sentinelPorts.map((port) => admin(port, sentinelPass));
    const masterInfo = async (s: Redis) => {
      const flat = (await s.call('SENTINEL', 'MASTER', SENTINEL_MASTER)) as string[];
      return Object.fromEntries(flat.flatMap((v, i) => (i % 2 === 0 ? [[v, flat[i + 1]]] : [])));
    };
    // A failover needs the Sentinels to know each other (hello messages, every 2 s) and the replica.
    await until(async () => (await Promise.all(sentinelClients.map(masterInfo))).every((m) => m['num-other-sentinels'] === '2' && m['num-slaves'] === '1'), 15_000, 'the Sentinels to find each other and the replica');
    const byPort = new Map([masterPort, replicaPort].map((p, i) => [p, nodes[i] as Node]));
    const masterAddress = async () => ((await (sentinelClients[0] as Redis).call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER)) as string[]).join(':');
    return {
      sentinels: sentinelPorts.map((p) => `127.0.0.1:${p}`),
      masterPort,
      replicaPort,
      password: pass,
      sentinelPassword: sentinelPass,
      masterAddress,
      async killMaster() {
        const port = Number((await masterAddress()).split(':')[1]);
        await byPort.get(port)?.stop('SIGKILL');
      },
      namedMasters: () => Promise.all(sentinelClients.map(async (s) => ((await s.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER)) as string[]).join(':'))),
      async stop() {
        for (const c of clients) c.disconnect();
        await Promise.all(nodes.map((n) => n.stop('SIGTERM')));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  });
}

export interface RedisCluster {
  /** The three masters, as host:port. */
  nodes: string[];
  ports: number[];
  username: string;
  password: string;
  /** An admin connection (the default user) to one node, for checks the gateway's user may not make. */
  admin(port: number): Redis;
  stop(): Promise<void>;
}

/**
 * Three masters, no replicas, built with `redis-cli --cluster create`. The gateway's user has
 * the narrowest ACL on every node; the default user (the admin) builds and inspects it.
 */
export async function startRedisCluster(keyPrefix = 'csg'): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'csg-redis-cluster-'));
  const nodes: Node[] = [];
  const admins: Redis[] = [];
  return startAll(dir, nodes, async () => {
    const gatewayPassword = password();
    const adminPassword = password();
    // Each node's bus port is chosen too: port + 10000 may be taken or out of range.
    const ports = await Promise.all([0, 1, 2, 3, 4, 5].map(() => freePort()));
    const [dataPorts, busPorts] = [ports.slice(0, 3), ports.slice(3)];
    await Promise.all(
      dataPorts.map(async (port, i) => {
        mkdirIn(dir, `node-${port}`);
        const conf = writeConf(dir, `node-${port}.conf`, [
          ...dataNode(port, join(dir, `node-${port}`)),
          'cluster-enabled yes',
          `cluster-port ${busPorts[i]}`,
          `cluster-config-file nodes-${port}.conf`,
          'cluster-node-timeout 2000',
          `user default on >${adminPassword} ~* &* +@all`,
          redisAclRule(GATEWAY_USER, gatewayPassword, keyPrefix),
        ]);
        nodes.push(await startNode([conf], port));
      }),
    );
    await runCli(['-a', adminPassword, '--no-auth-warning', '--cluster', 'create', ...dataPorts.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    const admin = (port: number) => {
      const r = new Redis({ port, host: '127.0.0.1', password: adminPassword });
      r.on('error', () => undefined);
      admins.push(r);
      return r;
    };
    // Every node must agree that all slots are served before the gateway's client is told the layout.
    await until(async () => (await Promise.all(dataPorts.map(async (p) => (await admin(p).call('CLUSTER', 'INFO')) as string))).every((i) => /cluster_state:ok/.test(i) && /cluster_known_nodes:3/.test(i)), 15_000, 'the cluster to be ok on every node');
    return {
      nodes: dataPorts.map((p) => `127.0.0.1:${p}`),
      ports: dataPorts,
      username: GATEWAY_USER,
      password: gatewayPassword,
      admin,
      async stop() {
        for (const r of admins) r.disconnect();
        await Promise.all(nodes.map((n) => n.stop('SIGTERM')));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  });
}

function runCli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(REDIS_CLI as string, args, { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`redis-cli ${args.slice(2).join(' ')}: ${stderr || stdout}`)) : resolve(stdout)));
  });
}

function mkdirIn(dir: string, name: string): void {
  mkdirSync(join(dir, name), { recursive: true });
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
