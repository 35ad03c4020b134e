import { constants } from 'node:os';

/**
 * Resolves with the first SIGINT or SIGTERM, so long-running commands can close cleanly. A second
 * one (Ctrl+C twice) exits at once with 128 + its number, as a shell reports a killed process.
 * That exit is explicit: as PID 1 in a container the kernel ignores a signal left to its default
 * action, so leaving it to Node's default would make the second signal do nothing there.
 */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      const onSecond = (second: NodeJS.Signals) => process.exit(128 + constants.signals[second]);
      process.once('SIGINT', onSecond);
      process.once('SIGTERM', onSecond);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
