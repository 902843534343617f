/**
 * @module cache/metadata/list-queries
 * The `lists` table: the last good tags/list and referrers answers per upstream and key, served
 * when the upstream cannot be asked. Statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';

export interface ListRow {
  status: number;
  contentType: string | null;
  link: string | null;
  body: Buffer;
  fetchedAt: number;
}

export class ListQueries {
  readonly #get: Statement<[string, string], ListRow>;
  readonly #put: Statement<[string, string, number, string | null, string | null, Buffer, number]>;

  constructor(db: Database) {
    this.#get = db.prepare('SELECT status, content_type AS contentType, link, body, fetched_at AS fetchedAt FROM lists WHERE upstream = ? AND key = ?');
    this.#put = db.prepare(`INSERT INTO lists (upstream, key, status, content_type, link, body, fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(upstream, key) DO UPDATE SET status = excluded.status, content_type = excluded.content_type,
      link = excluded.link, body = excluded.body, fetched_at = excluded.fetched_at`);
  }

  get(upstream: string, key: string): ListRow | undefined {
    return this.#get.get(upstream, key);
  }

  /** Stores (or replaces) the answer for `key`. */
  put(upstream: string, key: string, row: ListRow): void {
    this.#put.run(upstream, key, row.status, row.contentType, row.link, row.body, row.fetchedAt);
  }
}
