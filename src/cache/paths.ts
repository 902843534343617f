/**
 * @module cache/paths
 * The one place that builds paths inside the data directory. Every file name below comes from
 * a validated sha256 hex digest or from ocimirror itself, never from client text, so nothing a
 * client sends can name a path outside `<data>`.
 *
 * ```
 * <data>/                                  storage.path (default ./data)
 * ├── ocimirror.db                         SQLite metadata (WAL); tables in cache/metadata/schema.ts
 * ├── ocimirror.db-wal, ocimirror.db-shm   SQLite write-ahead log and shared memory
 * ├── lock                                 pid of the serve or gc --offline using the directory (cli/data-lock)
 * ├── reserve                              ≤ 4 MiB of zeros, deleted on a full disk so eviction can write (lifecycle/disk-space)
 * ├── blobs/
 * │   └── sha256/
 * │       └── ab/                          first two hex digits, so no directory holds millions of files
 * │           └── ab12…ef                  a committed blob: its sha256 and size were verified before rename
 * └── tmp/
 *     └── ab12…ef.<pid>.<n>.part           a fill in progress; deleted at start-up and on failure
 * ```
 * Manifests (small, served whole) live in SQLite with their exact bytes, not on disk.
 */
import path from 'node:path';

const HEX64 = /^[a-f0-9]{64}$/;

export interface DataPaths {
  readonly root: string;
  readonly database: string;
  readonly blobsRoot: string;
  readonly tmp: string;
  /** Room kept for the database on a full disk (cache/lifecycle/disk-space). */
  readonly reserve: string;
  /** Directory of committed blobs sharing the first two hex digits. */
  blobDir(hex: string): string;
  blobFile(hex: string): string;
  tempFile(hex: string, sequence: number): string;
}

export function dataPaths(root: string): DataPaths {
  const absRoot = path.resolve(root);
  const blobsRoot = path.join(absRoot, 'blobs', 'sha256');
  const tmp = path.join(absRoot, 'tmp');
  const checked = (hex: string) => {
    // Defence in depth: callers pass parsed digests, but a path is never built from anything else.
    if (!HEX64.test(hex)) throw new Error(`refusing to build a blob path from '${hex.slice(0, 80)}'`);
    return hex;
  };
  return Object.freeze({
    root: absRoot,
    database: path.join(absRoot, 'ocimirror.db'),
    blobsRoot,
    tmp,
    reserve: path.join(absRoot, 'reserve'),
    blobDir: (hex: string) => path.join(blobsRoot, checked(hex).slice(0, 2)),
    blobFile: (hex: string) => path.join(blobsRoot, checked(hex).slice(0, 2), hex),
    tempFile: (hex: string, sequence: number) => path.join(tmp, `${checked(hex)}.${process.pid}.${sequence}.part`),
  });
}
