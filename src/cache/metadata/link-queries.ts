/**
 * @module cache/metadata/link-queries
 * The `links` table: which repositories (per upstream) are known to hold a digest, so a blob or
 * manifest cached for one repository is served for another only once that one's upstream has
 * vouched for it. Statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';

export interface LinkKey {
  readonly upstream: string;
  readonly repo: string;
  readonly digest: string;
}

export class LinkQueries {
  readonly #has: Statement<[string, string, string], number>;
  readonly #put: Statement<[string, string, string]>;
  readonly #deleteTo: Statement<[string], LinkKey>;
  readonly #deleteOrphans: Statement<[], LinkKey>;

  constructor(db: Database) {
    this.#has = db.prepare<[string, string, string], number>('SELECT 1 FROM links WHERE upstream = ? AND repo = ? AND digest = ?').pluck();
    this.#put = db.prepare('INSERT OR IGNORE INTO links (upstream, repo, digest) VALUES (?, ?, ?)');
    this.#deleteTo = db.prepare('DELETE FROM links WHERE digest = ? RETURNING upstream, repo, digest');
    this.#deleteOrphans = db.prepare(`DELETE FROM links WHERE digest NOT IN (SELECT digest FROM manifests)
      AND digest NOT IN (SELECT digest FROM blobs) RETURNING upstream, repo, digest`);
  }

  has(upstream: string, repo: string, digest: string): boolean {
    return this.#has.get(upstream, repo, digest) !== undefined;
  }

  /** Adds a link; one already there stays as it is. */
  put(upstream: string, repo: string, digest: string): void {
    this.#put.run(upstream, repo, digest);
  }

  /** Deletes every link to `digest`; returns them. */
  deleteTo(digest: string): LinkKey[] {
    return this.#deleteTo.all(digest);
  }

  /** Deletes links to digests that are neither a cached blob nor a cached manifest; returns them. */
  deleteOrphans(): LinkKey[] {
    return this.#deleteOrphans.all();
  }
}
