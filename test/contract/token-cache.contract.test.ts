import { after, before, describe } from 'node:test';
import { Redis } from 'ioredis';
import { createTokenCache as createMemoryTokenCache } from '../../src/coze/token-cache.js';
import { redisMissing, startRedis, type RedisServer } from '../helpers/redis.js';
import { inFrontOfRedis, runTokenCacheContract, type CacheFactory } from '../helpers/token-cache-contract.js';

/**
 * The token cache's contract, run against each store (STYLE.md): memory alone, and memory in
 * front of the shared Redis level, on a real redis-server (the Sentinel, Cluster and TLS suites
 * in test/e2e/redis-*.test.ts run it too). Each test gets its own namespace. Without
 * redis-server the Redis variant skips and the memory one still runs.
 */
let redisServer: RedisServer | undefined;
let redis: Redis;
let subscriber: Redis;
function useRedis(): void {
  before(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    subscriber = new Redis(redisServer.url);
  });
  after(async () => {
    redis?.disconnect();
    subscriber?.disconnect();
    await redisServer?.stop();
  });
}

const variants: Array<{ name: string; make: CacheFactory; needsRedis?: boolean }> = [
  { name: 'memory', make: (options) => createMemoryTokenCache(options) },
  {
    name: 'memory + redis',
    needsRedis: true,
    make: (options) => inFrontOfRedis(redis, subscriber, 'contract')(options),
  },
];

for (const { name, make, needsRedis } of variants) {
  describe(`token-cache contract: ${name}`, { skip: needsRedis ? redisMissing : false }, () => {
    if (needsRedis) useRedis();
    runTokenCacheContract(make);
  });
}

