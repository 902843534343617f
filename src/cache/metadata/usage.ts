/**
 * @module cache/metadata/usage
 * How much the cache holds, exactly: blob bytes (what `storage.maxSize` limits), blob count, and
 * manifest bytes and count (manifests live in SQLite, not under the quota).
 *
 * Triggers on `blobs` and `manifests` (metadata/schema) keep one row of totals in step with every
 * insert, delete and resize, inside the writer's own transaction, whoever the writer is
 * (fills, eviction, deletion, gc, start-up reconcile). So reading usage is one primary-key read,
 * cheap enough to check after every commit, and never drifts from the tables the way an
 * in-memory counter could. Start-up reconcile drops rows whose file is gone, so after it the
 * totals also match the disk. `recount()` recomputes from the tables and repairs the row; it
 * should never find a difference.
 */
import type { Metadata } from './metadata.ts';
import type { CacheUsage } from './usage-queries.ts';

export type { CacheUsage } from './usage-queries.ts';

const NOTHING: CacheUsage = { bytes: 0, blobs: 0, manifestBytes: 0, manifests: 0 };

export class UsageMeter {
  readonly #metadata: Metadata;

  constructor(metadata: Metadata) {
    this.#metadata = metadata;
  }

  /** The running totals: one row read. */
  current(): CacheUsage {
    return this.#metadata.usage.current() ?? NOTHING;
  }

  /** Recomputes the totals from the tables (a scan of every row) and repairs the running row if it differs. */
  recount(): { usage: CacheUsage; drifted: boolean } {
    return this.#metadata.transaction(() => {
      const usage = this.#metadata.usage.sum();
      const before = this.current();
      const drifted = (Object.keys(usage) as (keyof CacheUsage)[]).some((k) => usage[k] !== before[k]);
      if (drifted) this.#metadata.usage.repair();
      return { usage, drifted };
    });
  }
}
