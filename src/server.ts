import http, { type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Registry } from 'prom-client';
import { createAdminApp } from './admin/admin-app.js';
import { createAuthenticatorFromConfig } from './auth/identity.js';
import { connectRedis } from './cache/redis-client.js';
import { redisTopology, type RedisTopology } from './cache/redis-topology.js';
import { createRedisTokenStore, redisNamespace } from './cache/redis-token-store.js';
import { createTokenSealer } from './cache/token-crypto.js';
import { configWarnings, parseEncryptionKey, splitKeys, type GatewayConfig } from './config/load.js';
import { createJwtSigner } from './coze/jwt-signer.js';
import { createMintBreaker } from './coze/mint-breaker.js';
import { createTokenCache, type TokenCache } from './coze/token-cache.js';
import { createTokenClient } from './coze/token-client.js';
import { answerClientErrors } from './http/client-errors.js';
import { createCors } from './http/cors.js';
import { createLogger, createSessionHasher, sessionHashKey, type Logger } from './log/logger.js';
import { throttleLog } from './log/throttle.js';
import type { Steps } from './maybe.js';
import { createMetrics, type GatewayMetrics } from './metrics/metrics.js';
import { createConcurrencyLimiter } from './policy/concurrency-limit.js';
import { USAGE_ENDPOINT, VENDING_ENDPOINT } from './policy/endpoints.js';
import { createRateLimiter } from './policy/rate-limit.js';
import { createRouteTable, selectEndpoints } from './policy/route-table.js';
import { createSharedRateLimiter } from './policy/shared-rate-limit.js';
import { createBodyBudget } from './proxy/body-budget.js';
import { createForwarder } from './proxy/forwarder.js';
import { createProxyHandler } from './proxy/proxy-handler.js';
import type { RelayContext } from './proxy/relay.js';
import { createWebSocketProxy, type WebSocketProxy } from './proxy/websocket.js';
import { createSessionNamer } from './session/session-name.js';
import { tokenKeysFromConfig } from './coze/mint-request.js';
import { createRedisUsageStore } from './usage/usage-store-redis.js';
import { createChatRetriever } from './usage/chat-retrieve.js';
import { createUsageService, type UsageService } from './usage/usage-service.js';

/** At most one warning a minute for forged identity headers, however many arrive (log/throttle.ts). */
const UNTRUSTED_HEADER_LOG_INTERVAL_MS = 60_000;

/** After a failed mint, new mints wait 1 s, doubling per failure in a row up to 30 s. */
const MINT_HOLD_BASE_MS = 1000;
const MINT_HOLD_MAX_MS = 30_000;

export interface GatewayDeps {
  logger?: Logger;
  registry?: Registry;
  now?: () => number;
  /**
   * The clock of the usage windows alone (days and months of the budgets), so a test can move
   * it across midnight without expiring tokens and credentials; `now` when absent.
   */
  usageNow?: () => number;
  /** How often both ends of a relayed WebSocket are pinged (30 s); tests shorten it. */
  websocketHeartbeatMs?: number;
  /** How request steps are chained (src/maybe.ts); tests pass DEFERRED_STEPS to run every step later. */
  steps?: Steps;
}

export interface Gateway {
  /** The main port: the proxied Coze API (and, when enabled, /gateway/token). */
  handler: RequestListener;
  /** The admin port: /metrics, /healthz, /readyz. */
  adminHandler: RequestListener;
  /** WebSocket upgrades on the main port. */
  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  tokens: TokenCache;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Per-identity usage and budgets. */
  usage: UsageService;
  /** Open SSE responses, so a drain can end the stragglers with a final event. */
  streams: Set<RelayContext>;
  /** Relayed WebSockets, which a drain counts as in-flight work, tells to go and, last, cuts. */
  websockets: Pick<WebSocketProxy, 'closeAll' | 'terminateAll' | 'idle' | 'size'>;
  startDrain(): void;
  isDraining(): boolean;
  close(): Promise<void>;
}

/**
 * Wires the gateway from a validated config. Reads no environment and opens no port, so tests
 * can build many gateways side by side and listen wherever they like.
 */
export async function createGateway(config: GatewayConfig, deps: GatewayDeps = {}): Promise<Gateway> {
  const logger = deps.logger ?? createLogger({ level: config.log.level });
  for (const warning of configWarnings(config)) logger.warn(warning);
  const registry = deps.registry ?? new Registry();
  const now = deps.now ?? Date.now;
  let draining = false;

  const { policy } = config;
  // The loader already refused a bad selection, naming the setting; this only builds it.
  const routes = createRouteTable(selectEndpoints(policy.routes, policy.disabledRoutes).endpoints, {
    enforceUserId: policy.enforceUserId,
    allowedBotIds: policy.allowedBotIds,
    allowedWorkflowIds: policy.allowedWorkflowIds,
    allowedAppIds: policy.allowedAppIds,
    allowDrafts: policy.allowDrafts,
    botInfo: policy.botInfo,
  });
  // The cache is built after the metrics it reports to; the gauge reads it lazily at scrape time.
  const cacheRef: { current?: TokenCache } = {};
  const usageRef: { current?: UsageService } = {};
  const metrics = createMetrics({
    registry,
    routeNames: routes.names,
    tokenCacheEntries: () => cacheRef.current?.size ?? 0,
    usageUnsynced: () => usageRef.current?.counter.unsynced ?? 0,
    usageFollowUpsPending: () => usageRef.current?.followUps?.pending ?? 0,
  });

  const sessionHash = createSessionHasher(sessionHashKey(config.coze.privateKey));
  const signer = await createJwtSigner({
    appId: config.coze.appId,
    keyId: config.coze.keyId,
    privateKeyPem: config.coze.privateKey,
    audience: config.coze.audience,
    ttlSeconds: config.coze.jwtTtlSeconds,
    now,
  });
  const tokenClient = createTokenClient({
    baseUrl: config.coze.baseUrl,
    accountId: config.coze.accountId,
    signer,
    durationSeconds: config.coze.tokenTtlSeconds,
    deadlineMs: config.coze.mintDeadlineSeconds * 1000,
    now,
    onExchange(report) {
      metrics.tokenMints.labels(report.outcome).inc();
      metrics.tokenMintDuration.observe(report.durationMs / 1000);
      const fields = { session: sessionHash(report.sessionName), outcome: report.outcome, attempts: report.attempt, durationMs: report.durationMs, cozeLogId: report.logId, errorCode: report.errorCode, errorMessage: report.errorMessage };
      if (report.outcome === 'success') logger.debug(fields, 'minted a Coze token');
      else logger.warn(fields, 'Coze token exchange failed');
    },
  });
  const tokenKeys = tokenKeysFromConfig(config);
  const breaker = createMintBreaker((key) => tokenClient.exchange(tokenKeys.mintRequest(key)), {
    baseHoldMs: MINT_HOLD_BASE_MS,
    maxHoldMs: MINT_HOLD_MAX_MS,
    now,
    onHeld: () => metrics.tokenMintsHeld.inc(),
  });
  const topology = redisTopology(config.cache);
  const redis = topology ? await connectShared(config, topology, metrics, logger) : undefined;
  const tokens = createTokenCache({
    mint: breaker.mint,
    refuse: breaker.refusal,
    ...(redis ? { shared: redis.tokens } : {}),
    maxEntries: config.coze.tokenCacheMaxEntries,
    refreshBeforeSeconds: config.coze.refreshBeforeSeconds,
    // A waiter gives up a little after the mint's own deadline, never before it.
    waitTimeoutMs: config.coze.mintDeadlineSeconds * 1000 + 1000,
    now,
    onLookup: (result) => metrics.tokenCacheRequests.labels(result).inc(),
    onBackgroundRefreshError: (key) => logger.warn({ session: sessionHash(tokenKeys.sessionNameOf(key)) }, 'background token refresh failed; serving the current token until it expires'),
  });
  cacheRef.current = tokens;

  const authenticator = await createAuthenticatorFromConfig(config.identity, {
    now,
    onApiKeysReload(outcome, detail) {
      metrics.apiKeyReloads.labels(outcome).inc();
      if (outcome === 'ok') logger.info({ entries: detail.entries }, 'identity.apiKeys.file reloaded');
      else logger.error({ error: detail.error }, 'identity.apiKeys.file is invalid: the last good version stays in force until it is fixed');
    },
    // The header's value is left out: it is the identity claimed, a user id the log may not hold.
    onUntrustedHeader: throttleLog(UNTRUSTED_HEADER_LOG_INTERVAL_MS, now, (suppressed, remoteAddress: string | undefined) =>
      logger.warn(
        { header: config.identity.trustedHeader.name, remoteAddress, suppressed },
        'identity header from outside identity.trustedHeader.allowFrom refused with 401: someone is claiming an identity, or a proxy that sets it is not in allowFrom',
      ),
    ),
  });
  const streams = new Set<RelayContext>();
  const forwarder = createForwarder({ target: config.coze.baseUrl });
  const concurrency = createConcurrencyLimiter(config.rateLimit.maxConcurrentPerIdentity);
  const bodyBudget = createBodyBudget(config.server.bufferedBodyBudgetBytes, (inUse) => metrics.bufferedRequestBytes.set(inUse));
  const forwardHeaders = policy.forwardHeaders.map((h) => h.toLowerCase());
  const sessionName = createSessionNamer({
    template: config.session.template,
    prefix: config.session.prefix,
    ...(config.session.hmacSecret ? { hmacSecret: config.session.hmacSecret } : {}),
  });

  const localRateLimiter = createRateLimiter({ requestsPerMinute: config.rateLimit.requestsPerMinute, now });
  const rateLimiter = redis
    ? createSharedRateLimiter({
        requestsPerMinute: config.rateLimit.requestsPerMinute,
        redis: redis.connection.client,
        namespace: redis.namespace,
        local: localRateLimiter,
        commandTimeoutMs: config.cache.commandTimeoutMs,
        now,
        onError: () => metrics.redisErrors.labels('rate_limit').inc(),
      })
    : localRateLimiter;
  const usage = createUsageService({
    budgets: config.budgets,
    store: redis ? createRedisUsageStore({ redis: redis.connection.client, namespace: redis.namespace, commandTimeoutMs: config.cache.commandTimeoutMs }) : undefined,
    metrics,
    logger,
    retrieveChat: createChatRetriever({ forwarder, tokens, timeoutMs: config.server.upstreamTimeoutSeconds * 1000 }),
    now: deps.usageNow ?? now,
  });
  usageRef.current = usage;
  const admitDeps = {
    routes,
    authenticate: (req: Parameters<typeof authenticator.authenticate>[0]) => authenticator.authenticate(req),
    rateLimiter,
    concurrency,
    sessionName,
    metrics,
    maxHeadersCount: config.server.maxHeadersCount,
    ...(deps.steps ? { steps: deps.steps } : {}),
  };
  const proxyHandler = createProxyHandler({
    ...admitDeps,
    tokens,
    now,
    forwarder,
    cors: createCors(config.cors.allowedOrigins),
    logger,
    sessionHash,
    maxBodyBytes: config.server.maxBodyBytes,
    bodyBudget,
    bodyReadTimeoutMs: config.server.bodyReadTimeoutSeconds * 1000,
    forwardHeaders,
    upstreamTimeoutMs: config.server.upstreamTimeoutSeconds * 1000,
    streamIdleTimeoutMs: config.server.streamIdleTimeoutSeconds * 1000,
    isDraining: () => draining,
    vendingEnabled: config.tokenVending.enabled,
    vendingEndpoint: routes.compile(VENDING_ENDPOINT),
    usageEndpoint: routes.compile(USAGE_ENDPOINT),
    streams,
    budgets: usage.budgets,
    tokenKeys,
    usage,
  });

  const wsProxy = createWebSocketProxy({
    ...admitDeps,
    tokens,
    logger,
    sessionHash,
    wsBaseUrl: config.coze.wsBaseUrl,
    forwardHeaders,
    connectTimeoutMs: config.server.upstreamTimeoutSeconds * 1000,
    isDraining: () => draining,
    budgets: usage.budgets,
    tokenKeys,
    usage,
    heartbeatMs: deps.websocketHeartbeatMs,
  });

  const adminApp = createAdminApp({
    registry,
    ready: async () => {
      if (draining) return { ready: false, detail: 'draining' };
      const jwks = await authenticator.ready();
      if (!jwks) return { ready: false, detail: 'the identity JWKS has not been reachable yet' };
      // A down Redis is shown but does not take the replica out: it serves from memory.
      return { ready: true, detail: redis ? `ok; redis ${redis.connection.describe()}` : 'ok' };
    },
  });

  return {
    handler: proxyHandler,
    adminHandler: adminApp as unknown as RequestListener,
    onUpgrade: (req, socket, head) => wsProxy.onUpgrade(req, socket, head),
    websockets: wsProxy,
    tokens,
    metrics,
    logger,
    usage,
    streams,
    startDrain() {
      draining = true;
    },
    isDraining: () => draining,
    async close() {
      authenticator.close();
      // Before the upstream pool goes: no follow-up starts a retrieve that would fail on it.
      usage.followUps?.close();
      await forwarder.close();
      tokenClient.close();
      // Counts not yet in Redis are written first (bounded wait).
      await usage.close();
      await redis?.connection.close();
    },
  };
}

/**
 * How long a mint keeps retrying a connected Redis that does not answer before it goes ahead
 * alone: long enough to ride out a stall, short enough that a caller, who waits a little past
 * the mint deadline, still gets a token.
 */
const redisGiveUpAfterMs = (commandTimeoutMs: number, mintDeadlineMs: number) => Math.max(1000, Math.min(commandTimeoutMs * 4, mintDeadlineMs / 2));

/** The configured Redis (one node, Sentinel or Cluster): a client for the shared token level and the shared rate limit, and one for pub/sub. */
async function connectShared(config: GatewayConfig, topology: RedisTopology, metrics: GatewayMetrics, logger: Logger) {
  const { cache, coze } = config;
  const connection = connectRedis(topology, {
    commandTimeoutMs: cache.commandTimeoutMs,
    onStateChange: (up) => {
      metrics.redisUp.set(up ? 1 : 0);
      if (up) logger.info({ redis: connection.describe() }, 'connected to Redis: tokens, mints and rate limits are shared');
      else logger.warn({ redis: topology.label }, 'Redis is unreachable: serving from memory until it is back');
    },
  });
  const namespace = redisNamespace(cache.keyPrefix, coze.appId, coze.baseUrl, coze.accountId);
  const sealer = createTokenSealer(
    parseEncryptionKey(cache.encryptionKey as string) as Buffer,
    splitKeys(cache.previousEncryptionKeys).map((k) => parseEncryptionKey(k) as Buffer),
  );
  const tokens = createRedisTokenStore({
    redis: connection.client,
    subscriber: connection.subscriber,
    sealer,
    namespace,
    lockTtlMs: cache.lockTtlSeconds * 1000,
    commandTimeoutMs: cache.commandTimeoutMs,
    giveUpAfterMs: redisGiveUpAfterMs(cache.commandTimeoutMs, coze.mintDeadlineSeconds * 1000),
    onError: (operation) => metrics.redisErrors.labels(operation).inc(),
    onUnsharedMint: () => metrics.tokenMintsUnshared.inc(),
  });
  if (!(await connection.whenReady(Math.max(1000, cache.commandTimeoutMs * 4)))) {
    logger.warn('Redis is not reachable at start-up: serving from memory until it is');
  }
  return { connection, tokens, namespace };
}

export interface ServerTimeouts {
  keepAliveTimeoutSeconds: number;
  /** server.maxHeadersCount: Node keeps one header more, so that admit.ts sees an excess and answers 431. */
  maxHeadersCount?: number;
  headersTimeoutSeconds: number;
  requestTimeoutSeconds: number;
  streamIdleTimeoutSeconds: number;
}

const DEFAULT_MAX_HEADERS_COUNT = 100;

/**
 * The main HTTP server with its timeouts set on purpose (Node's defaults cut streams and cause
 * load-balancer 502s: SPEC section 10). Requests Node refuses itself (431, 408, parse errors,
 * CONNECT) still get the Coze envelope, a request log line and their http_requests_total count.
 */
export function createMainServer(gateway: Pick<Gateway, 'handler' | 'logger' | 'metrics'>, timeouts: ServerTimeouts): http.Server {
  const server = http.createServer(
    {
      keepAliveTimeout: timeouts.keepAliveTimeoutSeconds * 1000,
      headersTimeout: timeouts.headersTimeoutSeconds * 1000,
      requestTimeout: timeouts.requestTimeoutSeconds * 1000,
      maxHeaderSize: 16 * 1024,
      noDelay: true,
      // Node checks the headers and request deadlines only this often (30 s by default), so a
      // slowloris connection would otherwise outlive headersTimeout by up to half a minute.
      connectionsCheckingInterval: Math.min(5000, Math.max(250, (timeouts.headersTimeoutSeconds * 1000) / 4)),
    },
    gateway.handler as (req: IncomingMessage, res: ServerResponse) => void,
  );
  // Socket inactivity in either direction: a stalled upload or a dead client is let go. While
  // a stream is relayed the relay's own idle timer decides (proxy-handler.ts watchTheWait).
  server.timeout = timeouts.streamIdleTimeoutSeconds * 1000;
  // Past its own count Node drops headers silently (a second credential could hide there): one
  // more than the limit is kept, and admit.ts refuses the request when it sees it (issue 15).
  server.maxHeadersCount = (timeouts.maxHeadersCount ?? DEFAULT_MAX_HEADERS_COUNT) + 1;
  answerClientErrors(server, gateway);
  return server;
}
