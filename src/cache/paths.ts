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
 * ├── tmp/
 * │   └── ab12…ef.<pid>.<n>.part           a fill in progress; deleted at start-up and on failure
 * └── uploads/
 *     └── <uuid>/                          a blob upload session in progress (cache/uploads)
 *         ├── data                         the bytes received so far; renamed into blobs/ once verified
 *         ├── session.json                 registry, repo, created_at, updated_at, size (the acknowledged length)
 *         └── session.json.part            session.json being rewritten (renamed over it)
 * ```
 * Manifests (small, served whole) live in SQLite with their exact bytes, not on disk.
 */
import path from 'node:path';
import { isUploadId } from './uploads/upload-id.ts';

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
  /** Parent of every upload session's directory. */
  readonly uploads: string;
  /** An upload session's directory; `id` must be a valid upload id (uploads/upload-id). */
  uploadDir(id: string): string;
  uploadData(id: string): string;
  uploadSession(id: string): string;
  uploadSessionTemp(id: string): string;
}

export function dataPaths(root: string): DataPaths {
  const absRoot = path.resolve(root);
  const blobsRoot = path.join(absRoot, 'blobs', 'sha256');
  const tmp = path.join(absRoot, 'tmp');
  const uploads = path.join(absRoot, 'uploads');
  const checked = (hex: string) => {
    // Defence in depth: callers pass parsed digests, but a path is never built from anything else.
    if (!HEX64.test(hex)) throw new Error(`refusing to build a blob path from '${hex.slice(0, 80)}'`);
    return hex;
  };
  const upload = (id: string) => {
    if (!isUploadId(id)) throw new Error(`refusing to build an upload path from '${id.slice(0, 80)}'`);
    return path.join(uploads, id);
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
    uploads,
    uploadDir: upload,
    uploadData: (id: string) => path.join(upload(id), 'data'),
    uploadSession: (id: string) => path.join(upload(id), 'session.json'),
    uploadSessionTemp: (id: string) => path.join(upload(id), 'session.json.part'),
  });
}
