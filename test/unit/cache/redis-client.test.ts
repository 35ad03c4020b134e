import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { connectRedis, type RedisConnection } from '../../../src/cache/redis-client.js';
import { redisTopology, type RedisTopology } from '../../../src/cache/redis-topology.js';
import { configSchema } from '../../../src/config/schema.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * connectRedis against a Sentinel that accepts connections and never answers: enough to put
 * a client in the middle of a reconnect, where ioredis's failover detector can cut it short.
 */
describe('redis connection', () => {
  const sockets: net.Socket[] = [];
  let accepted = 0;
  const silent = net.createServer((socket) => {
    accepted += 1;
    sockets.push(socket);
    socket.on('error', () => undefined);
  });
  const connections: RedisConnection[] = [];
  after(async () => {
    for (const c of connections) await c.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  });

  async function viaSilentSentinel(): Promise<{ connection: RedisConnection; topology: RedisTopology }> {
    if (!silent.listening) await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as net.AddressInfo).port;
    const topology = redisTopology(configSchema.parse({ cache: { redisSentinels: [`127.0.0.1:${port}`], redisSentinelName: 'mymaster' } }).cache) as RedisTopology;
    const connection = connectRedis(topology, { commandTimeoutMs: 100 });
    connections.push(connection);
    return { connection, topology };
  }

  it('redis-client-reconnects-after-end: a client ioredis ended without close() is started again', { timeout: 20_000 }, async () => {
    const { connection } = await viaSilentSentinel();
    while (accepted === 0) await sleep(10);
    assert.equal(connection.client.status, 'connecting', 'asking the Sentinel for the master');
    const ended = new Promise<void>((r) => connection.client.once('end', () => r()));
    // What the failover detector does on +switch-master, here in the middle of that reconnect.
    (connection.client as unknown as { connector: { disconnect(): void } }).connector.disconnect();
    await ended;
    await new Promise<void>((r) => connection.client.once('connecting', () => r()));
    assert.equal(connection.up, false);
    assert.match(connection.describe(), /^down for \d+ s \(\w+\); serving from memory$/);
  });

  it('close() ends a client for good', { timeout: 10_000 }, async () => {
    const { connection } = await viaSilentSentinel();
    await sleep(50);
    let again = false;
    connection.client.on('connecting', () => (again = true));
    const ended = new Promise<void>((r) => connection.client.once('end', () => r()));
    await connection.close();
    await ended;
    // Longer than the first reconnect delay (200 ms).
    await sleep(600);
    assert.equal(connection.client.status, 'end');
    assert.equal(again, false, 'no reconnect after close()');
  });
});
