/**
 * A cap on how many requests (and WebSockets) one session (the key: a session_name, admit.ts)
 * has in flight on this replica (rateLimit.maxConcurrentPerIdentity), so one caller cannot hold
 * every slot of the body budget or every upstream connection (issue 15, finding 9). Per
 * replica, in memory: a slot is a live connection of this process, which another replica cannot
 * release.
 */
export interface ConcurrencyLimiter {
  /** A release function for a free slot (call it once the request is over), or undefined when the cap is reached. */
  acquire(key: string): (() => void) | undefined;
  /** Slots held now by `key` (tests, metrics). */
  inFlight(key: string): number;
}

const unlimited = () => undefined;

export function createConcurrencyLimiter(maxPerKey: number): ConcurrencyLimiter {
  const held = new Map<string, number>();
  return {
    acquire(key) {
      if (maxPerKey <= 0) return unlimited;
      const count = held.get(key) ?? 0;
      if (count >= maxPerKey) return undefined;
      held.set(key, count + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (held.get(key) ?? 1) - 1;
        if (left <= 0) held.delete(key);
        else held.set(key, left);
      };
    },
    inFlight: (key) => held.get(key) ?? 0,
  };
}
