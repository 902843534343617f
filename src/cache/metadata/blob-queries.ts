/**
 * @module cache/metadata/blob-queries
 * The `blobs` table: one row per committed blob file (metadata/schema). Statements are prepared
 * once; a cache hit reads one row by primary key.
 */
import type { Database, Statement } from 'better-sqlite3';

export interface BlobRow {
  digest: string;
  size: number;
  mediaType: string | null;
}

/** How a blob or manifest has been used (epoch ms). */
export interface AccessRow {
  createdAt: number;
  lastAccess: number;
  hits: number;
}

/** A blob as eviction and gc walk them. */
export interface BlobUse {
  digest: string;
  size: number;
  lastAccess: number;
}

export class BlobQueries {
  readonly #get: Statement<[string], BlobRow>;
  readonly #put: Statement<[string, number, string | null, number, number]>;
  readonly #delete: Statement<[string], { size: number }>;
  readonly #allDigests: Statement<[], string>;
  readonly #digestsWithPrefix: Statement<[string, string], string>;
  readonly #bump: Statement<[number, number, string]>;
  readonly #access: Statement<[string], AccessRow>;
  readonly #lruPage: Statement<[number, string, number, number], BlobUse>;
  readonly #anyUsedBefore: Statement<[number], number>;
  readonly #unreferenced: Statement<[number], BlobUse>;
  readonly #lastAccessAll: Statement<[], unknown[]>;

  constructor(db: Database) {
    this.#get = db.prepare('SELECT digest, size, media_type AS mediaType FROM blobs WHERE digest = ?');
    this.#put = db.prepare(`INSERT INTO blobs (digest, size, media_type, created_at, last_access, hits) VALUES (?, ?, ?, ?, ?, 0)
      ON CONFLICT(digest) DO UPDATE SET size = excluded.size`);
    this.#delete = db.prepare('DELETE FROM blobs WHERE digest = ? RETURNING size');
    this.#allDigests = db.prepare<[], string>('SELECT digest FROM blobs').pluck();
    // '~' sorts after every hex digit, so the range is exactly the digests starting with the prefix.
    this.#digestsWithPrefix = db.prepare<[string, string], string>("SELECT digest FROM blobs WHERE digest >= 'sha256:' || ? AND digest < 'sha256:' || ? || '~'").pluck();
    this.#bump = db.prepare('UPDATE blobs SET last_access = ?, hits = hits + ? WHERE digest = ?');
    this.#access = db.prepare('SELECT created_at AS createdAt, last_access AS lastAccess, hits FROM blobs WHERE digest = ?');
    this.#lruPage = db.prepare(`SELECT digest, size, last_access AS lastAccess FROM blobs
      WHERE (last_access, digest) > (?, ?) AND last_access < ? ORDER BY last_access, digest LIMIT ?`);
    this.#anyUsedBefore = db.prepare<[number], number>('SELECT 1 FROM blobs WHERE last_access < ? LIMIT 1').pluck();
    // last_access starts at created_at and only grows, so it alone says "unused since".
    this.#unreferenced = db.prepare(`SELECT digest, size, last_access AS lastAccess FROM blobs b
      WHERE last_access < ? AND NOT EXISTS (SELECT 1 FROM refs r WHERE r.child = b.digest)`);
    // Raw rows: no object per row for a walk over every blob.
    this.#lastAccessAll = db.prepare<[], unknown[]>('SELECT digest, last_access FROM blobs').raw(true);
  }

  get(digest: string): BlobRow | undefined {
    return this.#get.get(digest);
  }

  /** Inserts a committed blob used now, or updates the size of a row already there (its history stays). */
  put(row: BlobRow, now: number): void {
    this.#put.run(row.digest, row.size, row.mediaType, now, now);
  }

  /** Deletes a row; returns the size it had, undefined when there was none. */
  delete(digest: string): number | undefined {
    return this.#delete.get(digest)?.size;
  }

  allDigests(): string[] {
    return this.#allDigests.all();
  }

  /** Digests of blobs whose hex starts with `hexPrefix` (a primary-key range scan). */
  digestsWithPrefix(hexPrefix: string): string[] {
    return this.#digestsWithPrefix.all(hexPrefix, hexPrefix);
  }

  /** Adds `hits` and sets the last access (a batched flush of cache hits). */
  recordHits(digest: string, hits: number, at: number): void {
    this.#bump.run(at, hits, digest);
  }

  access(digest: string): AccessRow | undefined {
    return this.#access.get(digest);
  }

  /**
   * Up to `limit` blobs in (last_access, digest) order after `after`, last used before `before`:
   * keyset pagination, so a walk may write between pages (better-sqlite3 allows no writes while
   * a read is open).
   */
  leastRecentlyUsed(after: { lastAccess: number; digest: string }, before: number, limit: number): BlobUse[] {
    return this.#lruPage.all(after.lastAccess, after.digest, before, limit);
  }

  /** Whether any blob was last used before `cutoff`. */
  anyUsedBefore(cutoff: number): boolean {
    return this.#anyUsedBefore.get(cutoff) !== undefined;
  }

  /**
   * Calls `fn` with every blob's digest and last access, in one pass over the table. `fn` must be
   * synchronous and must not query: the connection is busy until the walk ends.
   */
  eachLastAccess(fn: (digest: string, lastAccess: number) => void): void {
    for (const row of this.#lastAccessAll.iterate()) fn(row[0] as string, row[1] as number);
  }

  /** Blobs no cached manifest references, last used before `cutoff`. */
  unreferencedUsedBefore(cutoff: number): BlobUse[] {
    return this.#unreferenced.all(cutoff);
  }
}
