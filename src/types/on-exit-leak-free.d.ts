/** on-exit-leak-free has no types of its own; the two calls the gateway makes. */
declare module 'on-exit-leak-free' {
  /** Runs `fn(obj, 'exit')` on process exit while `obj` is alive, without keeping it alive. */
  export function register<T extends object>(obj: T, fn: (obj: T, event: 'exit') => void): void;
  export function unregister(obj: object): void;
  const onExit: { register: typeof register; unregister: typeof unregister };
  export default onExit;
}
