/**
 * @module cache/metadata/series-queries
 * The `series` table: one row per minute of traffic (bytes served from the cache and from the
 * upstream, bytes fetched upstream, requests by result) and of the cache's size, read back summed
 * into buckets for the console's charts (metrics/time-series). Statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';

/** What one minute (or, read back, one bucket of minutes) adds up to. */
export interface SeriesRow {
  /** Epoch minute the row (or bucket) starts at. */
  minute: number;
  servedCacheBytes: number;
  servedUpstreamBytes: number;
  upstreamBytes: number;
  hits: number;
  misses: number;
  /** The cache's blob bytes and count at the last write of the minute (the largest in a bucket). */
  cacheBytes: number;
  blobs: number;
}

export class SeriesQueries {
  readonly #add: Statement<[number, number, number, number, number, number, number, number]>;
  readonly #buckets: Statement<[{ bucket: number; from: number; to: number }], SeriesRow>;
  readonly #prune: Statement<[number]>;

  constructor(db: Database) {
    // Two writes within a minute (a flush before a read, then the timer) add up rather than replace.
    this.#add = db.prepare(`INSERT INTO series (minute, served_cache_bytes, served_upstream_bytes, upstream_bytes, hits, misses, cache_bytes, blobs)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(minute) DO UPDATE SET served_cache_bytes = served_cache_bytes + excluded.served_cache_bytes,
        served_upstream_bytes = served_upstream_bytes + excluded.served_upstream_bytes, upstream_bytes = upstream_bytes + excluded.upstream_bytes,
        hits = hits + excluded.hits, misses = misses + excluded.misses, cache_bytes = excluded.cache_bytes, blobs = excluded.blobs`);
    // A range scan of the primary key: at most 8 days × 1440 minutes = 11,520 rows. The bucket is
    // cast because a JS number binds as REAL, and minute / 15.0 would not truncate.
    this.#buckets = db.prepare(`SELECT (minute / CAST(@bucket AS INTEGER)) * CAST(@bucket AS INTEGER) AS minute, SUM(served_cache_bytes) AS servedCacheBytes,
        SUM(served_upstream_bytes) AS servedUpstreamBytes, SUM(upstream_bytes) AS upstreamBytes, SUM(hits) AS hits,
        SUM(misses) AS misses, MAX(cache_bytes) AS cacheBytes, MAX(blobs) AS blobs
      FROM series WHERE minute >= @from AND minute < @to GROUP BY minute / CAST(@bucket AS INTEGER) ORDER BY 1`);
    this.#prune = db.prepare('DELETE FROM series WHERE minute < ?');
  }

  /** Adds one minute's counts (the usage columns are replaced by the latest). */
  add(row: SeriesRow): void {
    this.#add.run(row.minute, row.servedCacheBytes, row.servedUpstreamBytes, row.upstreamBytes, row.hits, row.misses, row.cacheBytes, row.blobs);
  }

  /** Rows of minutes in [from, to), summed per `bucketMinutes` (aligned on multiples of it); buckets with no row are absent. */
  buckets(from: number, to: number, bucketMinutes: number): SeriesRow[] {
    return this.#buckets.all({ bucket: bucketMinutes, from, to });
  }

  /** Deletes minutes before `before`; returns how many. */
  prune(before: number): number {
    return this.#prune.run(before).changes;
  }
}
