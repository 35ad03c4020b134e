/**
 * A warning that anyone on the network can trigger at will (a forged identity header) must not
 * let them fill the log: the first event of each interval is written at once, the rest of that
 * interval only counted, and the next line written says how many were left out. The counters
 * see every event, so the log is the "who" and the metrics the "how many".
 */
export function throttleLog<A extends unknown[]>(intervalMs: number, now: () => number, write: (suppressed: number, ...args: A) => void): (...args: A) => void {
  let nextAt = -Infinity;
  let suppressed = 0;
  return (...args) => {
    const t = now();
    if (t < nextAt) {
      suppressed += 1;
      return;
    }
    nextAt = t + intervalMs;
    const left = suppressed;
    suppressed = 0;
    write(left, ...args);
  };
}
