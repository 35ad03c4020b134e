/**
 * One request path with a synchronous fast path (issue 17, item 2). A step answers now when it
 * can (a verified JWT in the cache, a local rate-limit decision, a fresh Coze token, a bodiless
 * request) and with a promise only when it must wait for I/O (JWKS, Redis, a mint, a body). The
 * same step functions serve both: there is no second, synchronous copy of the path to keep in
 * step, and a cached request goes from the socket to the forwarder without creating a promise.
 */
export type Maybe<T> = T | Promise<T>;

/**
 * How the steps of a request are chained. `chain` gives a value (or promise) to the next step;
 * `after` hands it to a continuation and sends any throw or rejection to `fail`. Whether the
 * continuation runs now or later depends on the value, so every listener and timer a step
 * relies on is armed before the I/O it guards (the forwarder calls back only after send()).
 */
export interface Steps {
  chain<T, U>(value: Maybe<T>, next: (value: T) => Maybe<U>): Maybe<U>;
  after<T>(value: Maybe<T>, next: (value: T) => void, fail: (err: unknown) => void): void;
}

/** Runs `fn(value)`; a throw goes to `fail`, which is then the only way out. */
export function guard<T>(fn: (value: T) => void, value: T, fail: (err: unknown) => void): void {
  try {
    fn(value);
  } catch (err) {
    fail(err);
  }
}

/** Now for a value, on settlement for a promise: the production chaining. */
export const STEPS: Steps = {
  chain: (value, next) => (value instanceof Promise ? value.then(next) : next(value)),
  after(value, next, fail) {
    if (value instanceof Promise) value.then((v) => guard(next, v, fail), fail);
    else guard(next, value, fail);
  },
};

/**
 * Every step later, as if each had waited for I/O: for tests only, which run the e2e suite
 * through the same functions this way too (test/e2e/async-steps.test.ts), so the slow shape
 * of the path is exercised on every case and not only on a first request.
 */
export const DEFERRED_STEPS: Steps = {
  chain: (value, next) => Promise.resolve(value).then(next),
  after(value, next, fail) {
    Promise.resolve(value).then((v) => guard(next, v, fail), fail);
  },
};
