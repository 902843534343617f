/**
 * @module cli/data-lock
 * One process per data directory: `serve` and `gc --offline` hold `<data>/lock`, a file holding
 * the owner's pid. Two processes on one directory would each trust their own view of the SQLite
 * rows and blob files (one's gc would delete the other's fills). A lock whose pid is no longer
 * alive was left by a crash (SIGKILL, power loss) and is taken over.
 */
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Name of the lock file inside the data directory (listed in cache/paths' layout). */
const LOCK_FILE = 'lock';

export class DataDirLockedError extends Error {
  readonly pid: number;
  readonly lockFile: string;

  constructor(dataDir: string, lockFile: string, pid: number) {
    super(
      `the data directory ${dataDir} is in use by process ${pid} (another ocimirror serve or gc --offline); ` +
        `stop it first, or use gc --url to ask the running mirror. If no ocimirror runs as pid ${pid}, delete ${lockFile}`,
    );
    this.name = 'DataDirLockedError';
    this.pid = pid;
    this.lockFile = lockFile;
  }
}

export interface DataDirLock {
  readonly file: string;
  /** Removes the lock if it is still this process's; safe to call more than once. */
  release(): void;
}

/**
 * Takes `<dataDir>/lock` (creating the directory) or throws {@link DataDirLockedError} naming
 * the live holder. The lock is released on `release()` and, failing that, when the process exits.
 */
export function lockDataDir(dataDir: string, { pid = process.pid, isAlive = processAlive }: { pid?: number; isAlive?: (pid: number) => boolean } = {}): DataDirLock {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, LOCK_FILE);
  // Written aside and linked into place: link() fails if the lock exists, and a lock file is never
  // seen empty, half-written, by a process deciding whether it is stale.
  const staged = path.join(dataDir, `${LOCK_FILE}.${pid}.new`);
  writeFileSync(staged, `${pid}\n`);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(staged, file);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 2) throw err;
      }
      const holder = readHolder(file);
      // Our own pid in the lock means a previous life of this pid (a container's pid 1 restarting).
      if (holder !== undefined && holder !== pid && isAlive(holder)) throw new DataDirLockedError(dataDir, file, holder);
      removeIfExists(file);
    }
  } finally {
    removeIfExists(staged);
  }
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    if (readHolder(file) === pid) removeIfExists(file);
  };
  process.on('exit', release);
  return { file, release };
}

function readHolder(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function removeIfExists(file: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Signal 0 checks existence without signalling; EPERM means it exists under another user. */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
