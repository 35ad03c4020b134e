import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

export interface WatchedFile<T> {
  /** The last version that parsed. */
  readonly current: T;
  /** Reads the file again now (the watcher and the poll call this); true when a new version took effect. */
  reload(): boolean;
  close(): void;
}

export interface WatchedFileOptions<T> {
  path: string;
  /** Throws an Error naming the problem; `reload` is false for the first read only. */
  parse(text: string, options: { reload: boolean }): T;
  /** How many entries a version holds, for the report. */
  size(value: T): number;
  pollMs?: number;
  onReload?: (outcome: 'ok' | 'error', detail: { entries?: number; error?: string }) => void;
}

/**
 * A file loaded at start-up (where an error stops the gateway: it throws) and reloaded when it
 * changes: fs.watch on its folder (a Kubernetes ConfigMap or Secret swaps a symlink, which a
 * watch on the file itself would miss), and a poll in case the file system sends no events (NFS,
 * some container mounts). A version that no longer parses keeps the last good one in force, and
 * is reported until it is fixed.
 */
export function watchFile<T>(options: WatchedFileOptions<T>): WatchedFile<T> {
  const { path } = options;
  const read = () => readFileSync(path, 'utf8');
  const digest = (t: string) => createHash('sha256').update(t).digest('hex');
  const first = read();
  let current = options.parse(first, { reload: false });
  let seen = digest(first);
  let lastFailure: string | undefined;

  function reload(): boolean {
    let next: string;
    try {
      next = read();
    } catch (err) {
      fail(`cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      return false;
    }
    const hash = digest(next);
    if (hash === seen) {
      // Back to the version in force after a bad edit: reported, so the next bad edit is news again.
      if (lastFailure !== undefined) {
        lastFailure = undefined;
        options.onReload?.('ok', { entries: options.size(current) });
      }
      return false;
    }
    try {
      current = options.parse(next, { reload: true });
    } catch (err) {
      fail((err as Error).message);
      return false;
    }
    seen = hash;
    lastFailure = undefined;
    options.onReload?.('ok', { entries: options.size(current) });
    return true;
  }
  function fail(error: string): void {
    // Reported once per distinct problem, not once per poll.
    if (error === lastFailure) return;
    lastFailure = error;
    options.onReload?.('error', { error });
  }

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), { persistent: false }, (_event, name) => {
      if (name === null || name === basename(path) || name.startsWith('..')) reload();
    });
    watcher.on('error', () => watcher?.close());
  } catch {
    // No file events here: the poll alone notices changes.
  }
  const poll = setInterval(reload, options.pollMs ?? 5000);
  poll.unref();

  return {
    get current() {
      return current;
    },
    reload,
    close() {
      clearInterval(poll);
      watcher?.close();
    },
  };
}
