/**
 * @module cache/metadata/usage-queries
 * How much the cache holds: the running totals of the `usage` row (kept by triggers, see
 * metadata/schema), the same totals summed from the tables, and per repository (through its
 * links) for the inventory. Statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';
import { RECOUNT_USAGE } from './schema.ts';

export interface CacheUsage {
  /** Bytes of committed blobs. */
  readonly bytes: number;
  readonly blobs: number;
  /** Bytes of cached manifests (kept in SQLite). */
  readonly manifestBytes: number;
  readonly manifests: number;
}

/** What the cache holds for one repository: blobs linked to it and how they were used. */
export interface RepositoryUsage {
  upstream: string;
  repo: string;
  blobs: number;
  bytes: number;
  /** Latest access of any of its blobs (epoch ms); null when it has none. */
  lastAccess: number | null;
  hits: number;
}

export class UsageQueries {
  readonly #db: Database;
  readonly #current: Statement<[], CacheUsage>;
  readonly #sum: Statement<[], CacheUsage>;
  readonly #repositories: Statement<[], RepositoryUsage>;

  constructor(db: Database) {
    this.#db = db;
    this.#current = db.prepare('SELECT blob_bytes AS bytes, blob_count AS blobs, manifest_bytes AS manifestBytes, manifest_count AS manifests FROM usage WHERE id = 0');
    this.#sum = db.prepare(`SELECT (SELECT COALESCE(SUM(size), 0) FROM blobs) AS bytes, (SELECT COUNT(*) FROM blobs) AS blobs,
      (SELECT COALESCE(SUM(size), 0) FROM manifests) AS manifestBytes, (SELECT COUNT(*) FROM manifests) AS manifests`);
    // Every repository with a link or a tag, so one whose blobs were all evicted still shows its tags.
    this.#repositories = db.prepare(`
      SELECT r.upstream, r.repo, COUNT(b.digest) AS blobs, COALESCE(SUM(b.size), 0) AS bytes,
             MAX(b.last_access) AS lastAccess, COALESCE(SUM(b.hits), 0) AS hits
      FROM (SELECT upstream, repo FROM links UNION SELECT upstream, repo FROM tags) r
      LEFT JOIN links l ON l.upstream = r.upstream AND l.repo = r.repo
      LEFT JOIN blobs b ON b.digest = l.digest
      GROUP BY r.upstream, r.repo ORDER BY r.upstream, r.repo`);
  }

  /** The running totals: one row read (undefined only if the row was deleted behind our back). */
  current(): CacheUsage | undefined {
    return this.#current.get();
  }

  /** The totals summed from the tables: a scan of every row. */
  sum(): CacheUsage {
    return this.#sum.get()!;
  }

  /** Rewrites the running totals from the tables. */
  repair(): void {
    this.#db.exec(RECOUNT_USAGE);
  }

  /** Per repository, ordered by upstream and repository. */
  repositories(): RepositoryUsage[] {
    return this.#repositories.all();
  }
}
