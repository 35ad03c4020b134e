import onExit from 'on-exit-leak-free';
import { pino, type DestinationStream } from 'pino';

export interface BatchedDestination extends DestinationStream {
  write(line: string): void;
  /** Hands every held line to the file descriptor; `done` once they are written. */
  flush(done?: (err?: Error) => void): void;
  /** Writes every held line now, synchronously (process exit). */
  flushSync(): void;
}

/**
 * Log lines to a file descriptor in writes of about `batchBytes`, none held longer than
 * `maxDelayMs` (issue 16). The lines are gathered here and handed to pino's sonic-boom one batch
 * at a time: sonic-boom batches by itself (minLength), but it measures the byte length of its
 * whole pending buffer on every write, so a line cost more the fuller the batch (5.2 µs a line
 * at 16 KB against 1.7 µs here, bench/README.md). On exit, including process.exit on a fatal
 * error, what is held is written synchronously after what sonic-boom still holds (pino.fatal
 * flushes the same way). A batch the thread pool is still writing at that moment may land after
 * them: every line is written, the order of that one batch is not promised (as with pino's own
 * exit hook).
 */
export function createBatchedDestination(options: { fd: number; batchBytes: number; maxDelayMs: number }): BatchedDestination {
  // Writes at once; minLength 1 and not 0 so that its flush waits for the write in flight.
  const out = pino.destination({ dest: options.fd, sync: false, minLength: 1 });
  let lines: string[] = [];
  let held = 0;
  let timer: NodeJS.Timeout | undefined;

  const take = (): string => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    const batch = lines.join('');
    lines = [];
    held = 0;
    return batch;
  };
  const handOver = () => {
    const batch = take();
    if (batch !== '') out.write(batch);
  };

  const destination: BatchedDestination = {
    write(line) {
      lines.push(line);
      // Characters, not bytes: only the size of a write depends on it.
      held += line.length;
      if (held >= options.batchBytes) handOver();
      else timer ??= setTimeout(handOver, options.maxDelayMs).unref();
    },
    flush(done) {
      handOver();
      out.flush(done);
    },
    flushSync() {
      const batch = take();
      out.flushSync();
      // A synchronous sonic-boom on the same descriptor: it retries partial writes and EAGAIN.
      if (batch !== '') pino.destination({ dest: options.fd, sync: true }).write(batch);
    },
  };
  onExit.register(destination, (registered: BatchedDestination) => registered.flushSync());
  return destination;
}
