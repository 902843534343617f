/**
 * @module cache/metadata/bucket-queries
 * The `bucket_blobs` table: which blobs this replica knows to be committed in the shared bucket
 * (storage.backend s3), with their sizes. Objects in the bucket never change once committed, so a
 * row is an immutable fact about a digest; a row can only go stale by the object's deletion
 * (bucket eviction), which a GET answering 404 corrects. Lost with the database, the table is
 * rebuilt from a listing of the bucket (cache/bucket/bucket-tier).
 */
import type { Database, Statement } from 'better-sqlite3';

export interface BucketIndexTotals {
  objects: number;
  bytes: number;
}

export class BucketQueries {
  readonly #size: Statement<[string], number>;
  readonly #put: Statement<[string, number, number]>;
  readonly #delete: Statement<[string]>;
  readonly #totals: Statement<[], BucketIndexTotals>;
  readonly #any: Statement<[], number>;
  readonly #putMany: (rows: readonly { digest: string; size: number }[], now: number) => void;

  constructor(db: Database) {
    this.#size = db.prepare<[string], number>('SELECT size FROM bucket_blobs WHERE digest = ?').pluck();
    this.#put = db.prepare('INSERT OR REPLACE INTO bucket_blobs (digest, size, seen_at) VALUES (?, ?, ?)');
    this.#delete = db.prepare('DELETE FROM bucket_blobs WHERE digest = ?');
    this.#totals = db.prepare('SELECT COUNT(*) AS objects, COALESCE(SUM(size), 0) AS bytes FROM bucket_blobs');
    this.#any = db.prepare<[], number>('SELECT 1 FROM bucket_blobs LIMIT 1').pluck();
    this.#putMany = db.transaction((rows: readonly { digest: string; size: number }[], now: number) => {
      for (const r of rows) this.#put.run(r.digest, r.size, now);
    });
  }

  /** The size of `digest` in the bucket, or undefined when this replica does not know it there. */
  size(digest: string): number | undefined {
    return this.#size.get(digest);
  }

  put(digest: string, size: number, now: number): void {
    this.#put.run(digest, size, now);
  }

  /** Records a page of a bucket listing in one transaction. */
  putMany(rows: readonly { digest: string; size: number }[], now: number): void {
    this.#putMany(rows, now);
  }

  delete(digest: string): void {
    this.#delete.run(digest);
  }

  isEmpty(): boolean {
    return this.#any.get() === undefined;
  }

  totals(): BucketIndexTotals {
    return this.#totals.get() as BucketIndexTotals;
  }
}
