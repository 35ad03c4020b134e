import type { RedisClient } from './redis-topology.js';

type Listener = (message: string) => void;

/** Per subscriber connection: its channels and their listeners, behind one 'message' listener. */
const hubs = new WeakMap<RedisClient, Map<string, Set<Listener>>>();

/**
 * Calls `listener` with each message published on `channel`, and with '' each time the
 * subscriber (re)connects: what was published while it was down is lost, so listeners should
 * look again. Subscribing waits for the connection to be ready (the gateway's connections have
 * no offline queue), and happens again after every reconnect.
 */
export function subscribeChannel(subscriber: RedisClient, channel: string, listener: Listener): void {
  let channels = hubs.get(subscriber);
  if (!channels) {
    const byChannel = new Map<string, Set<Listener>>();
    channels = byChannel;
    hubs.set(subscriber, byChannel);
    subscriber.on('message', (from: string, message: string) => {
      for (const l of byChannel.get(from) ?? []) l(message);
    });
    subscriber.on('ready', () => {
      for (const name of byChannel.keys()) subscriber.subscribe(name).catch(() => undefined);
      for (const set of byChannel.values()) for (const l of set) l('');
    });
  }
  let listeners = channels.get(channel);
  if (!listeners) {
    channels.set(channel, (listeners = new Set()));
    if (subscriber.status === 'ready') subscriber.subscribe(channel).catch(() => undefined);
  }
  listeners.add(listener);
}
