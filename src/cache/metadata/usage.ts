/**
 * @module cache/metadata/usage
 * How much the cache holds, exactly: blob bytes (what `storage.maxSize` limits), blob count, and
 * manifest bytes and count (manifests live in SQLite, not under the quota).
 *
 * Triggers on `blobs` and `manifests` (cache/metadata) keep one row of totals in step with every
 * insert, delete and resize, inside the writer's own transaction, whoever the writer is
 * (fills, eviction, deletion, gc, start-up reconcile). So reading usage is one primary-key read,
 * cheap enough to check after every commit, and never drifts from the tables the way an
 * in-memory counter could. Start-up reconcile drops rows whose file is gone, so after it the
 * totals also match the disk. `recount()` recomputes from the tables and repairs the row; it
 * should never find a difference.
 */
import type { Statement } from 'better-sqlite3';
import { RECOUNT_USAGE, type Metadata } from './metadata.ts';

export interface CacheUsage {
  /** Bytes of committed blobs. */
  readonly bytes: number;
  readonly blobs: number;
  /** Bytes of cached manifests (kept in SQLite). */
  readonly manifestBytes: number;
  readonly manifests: number;
}

const COLUMNS = 'blob_bytes AS bytes, blob_count AS blobs, manifest_bytes AS manifestBytes, manifest_count AS manifests';

export class UsageMeter {
  readonly #metadata: Metadata;
  readonly #current: Statement<[], CacheUsage>;
  readonly #sum: Statement<[], CacheUsage>;

  constructor(metadata: Metadata) {
    this.#metadata = metadata;
    this.#current = metadata.db.prepare(`SELECT ${COLUMNS} FROM usage WHERE id = 0`);
    this.#sum = metadata.db.prepare(`SELECT (SELECT COALESCE(SUM(size), 0) FROM blobs) AS bytes, (SELECT COUNT(*) FROM blobs) AS blobs,
      (SELECT COALESCE(SUM(size), 0) FROM manifests) AS manifestBytes, (SELECT COUNT(*) FROM manifests) AS manifests`);
  }

  /** The running totals: one row read. */
  current(): CacheUsage {
    return this.#current.get() ?? { bytes: 0, blobs: 0, manifestBytes: 0, manifests: 0 };
  }

  /** Recomputes the totals from the tables (a scan of every row) and repairs the running row if it differs. */
  recount(): { usage: CacheUsage; drifted: boolean } {
    return this.#metadata.db.transaction(() => {
      const usage = this.#sum.get()!;
      const before = this.current();
      const drifted = (Object.keys(usage) as (keyof CacheUsage)[]).some((k) => usage[k] !== before[k]);
      if (drifted) this.#metadata.db.exec(RECOUNT_USAGE);
      return { usage, drifted };
    })();
  }
}
