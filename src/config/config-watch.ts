/**
 * @module config/config-watch
 * Calls back when the config file's content changes, ~200 ms after the last write. Watches the
 * file's directory rather than the file: editors replace the file by rename, and a Kubernetes
 * ConfigMap update swaps the `..data` symlink the file points through, neither of which an
 * inotify watch on the old file sees. A stat poll backs the directory watch up (filesystems
 * without inotify, a directory that is itself replaced), and only a change of the bytes counts,
 * so the many events of one update reload once.
 */
import { readFileSync, unwatchFile, watch, watchFile, type FSWatcher } from 'node:fs';
import path from 'node:path';

export interface ConfigWatchOptions {
  /** Quiet time after the last event before the file is read (ms). */
  debounceMs?: number;
  /** Stat poll interval (ms). */
  pollMs?: number;
}

export interface ConfigWatch {
  close(): void;
}

export function watchConfigFile(file: string, onChange: () => void, { debounceMs = 200, pollMs = 2000 }: ConfigWatchOptions = {}): ConfigWatch {
  const absolute = path.resolve(file);
  const read = (): string | undefined => {
    try {
      return readFileSync(absolute, 'utf8');
    } catch {
      return undefined; // reported by the reload; an unreadable file is a change too
    }
  };
  let seen = read();
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    timer = undefined;
    const now = read();
    if (now === seen) return;
    seen = now;
    onChange();
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(check, debounceMs);
  };
  let dirWatch: FSWatcher | undefined;
  try {
    dirWatch = watch(path.dirname(absolute), { persistent: false }, schedule);
    dirWatch.on('error', () => dirWatch?.close()); // the directory went away: the poll goes on
  } catch {
    dirWatch = undefined;
  }
  const poll = () => schedule();
  watchFile(absolute, { interval: pollMs, persistent: false }, poll);
  return {
    close() {
      clearTimeout(timer);
      dirWatch?.close();
      unwatchFile(absolute, poll);
    },
  };
}
