import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import { generateKeyPair, exportSPKI, SignJWT, type CryptoKey } from 'jose';
import { Registry } from 'prom-client';
import { loadConfig, type GatewayConfig } from '../../src/config/load.js';
import { createEmulator, generateEmulatorApp, type Emulator, type EmulatorOptions } from '../../src/emulator/index.js';
import { createLogger } from '../../src/log/logger.js';
import { DEFERRED_STEPS, type Steps } from '../../src/maybe.js';
import { createGateway, createMainServer, type Gateway, type GatewayDeps } from '../../src/server.js';
import { addressPort, listen } from '../../src/cli/listen.js';

let steps: Steps | undefined;

/**
 * From now on, stacks started in this process chain every request step later, as if each had
 * waited for I/O (src/maybe.ts): test/e2e/async-steps.test.ts runs the e2e cases this way too.
 */
export function deferEveryStep(): void {
  steps = DEFERRED_STEPS;
}

export const CALLER_ISSUER = 'https://idp.example.test';
export const CALLER_AUDIENCE = 'coze-gateway';

export interface Stack {
  emulator: Emulator;
  gateway: Gateway;
  config: GatewayConfig;
  server: Server;
  /** http://127.0.0.1:PORT of the gateway's main port. */
  url: string;
  /** Every log line the gateway wrote, as raw text. */
  logs: string[];
  /** The Coze app's private key, to prove it never shows up anywhere. */
  privateKeyPem: string;
  /** A caller JWT for `subject`, signed by the test identity provider. */
  callerToken(subject: string, claims?: Record<string, unknown>, options?: { expiresIn?: string | number }): Promise<string>;
  callerKey: CryptoKey;
  /**
   * Another gateway in front of the same emulator, with the same config plus `env`: the
   * replicas of a scaled-out deployment. Closed with the stack.
   */
  replica(env?: Record<string, string>): Promise<Replica>;
  close(): Promise<void>;
}

export interface Replica {
  gateway: Gateway;
  server: Server;
  url: string;
  logs: string[];
  /** Closes this replica alone (the stack closes what is left). */
  close(): Promise<void>;
}

export interface StackOptions {
  /** How request steps are chained; by default STEPS, or DEFERRED_STEPS after deferEveryStep(). */
  steps?: Steps;
  env?: Record<string, string>;
  flags?: Record<string, string>;
  emulator?: Partial<EmulatorOptions>;
  /** Clocks and intervals given to every replica's gateway (e.g. usageNow, to move the budgets' day). */
  gatewayDeps?: Pick<GatewayDeps, 'usageNow' | 'now' | 'websocketHeartbeatMs'>;
  /** The Coze app is a channel app (its tokens apply the scope of their request). */
  channelApp?: boolean;
}

/** The emulator saw no API request, no token request and no WebSocket. */
export function assertNothingReachedCoze(stack: Pick<Stack, 'emulator'>): void {
  const seen = stack.emulator.requests.length + stack.emulator.tokenRequests + stack.emulator.websockets.length;
  if (seen !== 0) throw new Error(`nothing should have reached the emulator, but ${seen} request(s) did`);
}

/** The real gateway in front of the real emulator, both on 127.0.0.1 port 0. */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const { app, privateKeyPem } = await generateEmulatorApp('1127900106117');
  if (options.channelApp) app.type = 'channel';
  const emulator = await createEmulator({ apps: [app], audience: 'api.coze.cn', ...options.emulator });
  const caller = await generateKeyPair('RS256', { extractable: true });
  const baseEnv: Record<string, string> = {
    COZE_BASE_URL: emulator.url,
    COZE_WS_BASE_URL: emulator.wsUrl,
    COZE_AUDIENCE: 'api.coze.cn',
    COZE_APP_ID: app.appId,
    COZE_KEY_ID: app.keys[0]?.kid ?? '',
    COZE_PRIVATE_KEY: privateKeyPem,
    // A test that brings its own JWKS replaces the static key.
    ...(options.env?.IDENTITY_JWT_JWKS_URL ? {} : { IDENTITY_JWT_PUBLIC_KEY: await exportSPKI(caller.publicKey) }),
    IDENTITY_JWT_ISSUER: CALLER_ISSUER,
    IDENTITY_JWT_AUDIENCE: CALLER_AUDIENCE,
    LOG_LEVEL: 'debug',
    ...options.env,
  };
  const replicas = new Set<Replica>();
  async function startReplica(env: Record<string, string>): Promise<Replica & { config: GatewayConfig }> {
    const config = loadConfig({ env: { ...baseEnv, ...env }, flags: { port: '0', ...options.flags } });
    const logs: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
        cb();
      },
    });
    const gateway = await createGateway(config, { ...options.gatewayDeps, logger: createLogger({ level: 'debug', destination }), registry: new Registry(), ...((options.steps ?? steps) ? { steps: options.steps ?? steps } : {}) });
    const server = createMainServer(gateway, config.server);
    server.on('upgrade', gateway.onUpgrade);
    await listen(server, 0, '127.0.0.1');
    const replica = {
      config,
      gateway,
      server,
      logs,
      url: `http://127.0.0.1:${addressPort(server)}`,
      async close() {
        if (!replicas.delete(replica)) return;
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await gateway.close();
      },
    };
    replicas.add(replica);
    return replica;
  }
  // A config the loader refuses must not leave the emulator listening (the test process would never end).
  const { config, gateway, server, logs, url } = await startReplica({}).catch(async (err: unknown) => {
    await emulator.close();
    throw err;
  });

  return {
    emulator,
    gateway,
    config,
    server,
    url,
    logs,
    privateKeyPem,
    callerKey: caller.privateKey,
    callerToken(subject, claims = {}, opts = {}) {
      return new SignJWT({ ...claims })
        .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
        .setSubject(subject)
        .setIssuer(CALLER_ISSUER)
        .setAudience(CALLER_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(opts.expiresIn ?? '1h')
        .sign(caller.privateKey);
    },
    replica: (env = {}) => startReplica(env),
    async close() {
      for (const replica of [...replicas]) await replica.close();
      await emulator.close();
    },
  };
}
