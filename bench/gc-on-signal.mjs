// Preloaded into the gateway by bench/leaks.ts (with --expose-gc): SIGUSR2 runs a full GC, so
// the heap read from /metrics afterwards holds only what is still referenced.
process.on('SIGUSR2', () => globalThis.gc?.());
