/**
 * @module cache/metadata/metadata
 * SQLite (WAL) metadata for the cache: which blobs are committed, manifests with their exact
 * bytes, tags with when they were last confirmed upstream, which repositories (per upstream)
 * are known to hold which digests, and cached list responses (tags/list, referrers); since
 * schema 2 also what each manifest references (cache/references), admin-API pins, and running
 * usage totals kept by triggers (cache/usage).
 * All statements are prepared once; access-time bumps are batched into one transaction a second
 * so a cache hit costs one indexed read and no write.
 */
import Database from 'better-sqlite3';
import type { Database as DB, Statement } from 'better-sqlite3';
import { manifestReferences } from './references.ts';

/**
 * 1: blobs, manifests, tags, links, lists.
 * 2: refs, pins, usage (+ triggers). A version 1 database is migrated when opened.
 */
export const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS blobs (
  digest      TEXT PRIMARY KEY,
  size        INTEGER NOT NULL,
  media_type  TEXT,
  created_at  INTEGER NOT NULL,
  last_access INTEGER NOT NULL,
  hits        INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blobs_last_access ON blobs(last_access);
CREATE TABLE IF NOT EXISTS manifests (
  digest      TEXT PRIMARY KEY,
  media_type  TEXT NOT NULL,
  size        INTEGER NOT NULL,
  bytes       BLOB NOT NULL,
  created_at  INTEGER NOT NULL,
  last_access INTEGER NOT NULL,
  hits        INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (
  upstream    TEXT NOT NULL,
  repo        TEXT NOT NULL,
  tag         TEXT NOT NULL,
  digest      TEXT NOT NULL,
  media_type  TEXT NOT NULL,
  fetched_at  INTEGER NOT NULL,
  PRIMARY KEY (upstream, repo, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags(digest);
CREATE TABLE IF NOT EXISTS links (
  upstream    TEXT NOT NULL,
  repo        TEXT NOT NULL,
  digest      TEXT NOT NULL,
  PRIMARY KEY (upstream, repo, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_digest ON links(digest);
CREATE TABLE IF NOT EXISTS lists (
  upstream     TEXT NOT NULL,
  key          TEXT NOT NULL,
  status       INTEGER NOT NULL,
  content_type TEXT,
  link         TEXT,
  body         BLOB NOT NULL,
  fetched_at   INTEGER NOT NULL,
  PRIMARY KEY (upstream, key)
) WITHOUT ROWID;
-- What a cached manifest references: kind 'manifest' | 'blob' | 'subject' (cache/references).
-- Written with the manifest and deleted with it, so a stored manifest never lacks its rows.
CREATE TABLE IF NOT EXISTS refs (
  parent      TEXT NOT NULL,
  child       TEXT NOT NULL,
  kind        TEXT NOT NULL,
  PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_child ON refs(child);
-- Pins added through the admin API (config pins live in the config), normalised image references.
CREATE TABLE IF NOT EXISTS pins (
  ref         TEXT PRIMARY KEY,
  created_at  INTEGER NOT NULL
) WITHOUT ROWID;
-- One row of running totals, kept exact by the triggers below whoever writes blobs or manifests,
-- so reading usage costs one row, not a SUM over every blob.
CREATE TABLE IF NOT EXISTS usage (
  id             INTEGER PRIMARY KEY CHECK (id = 0),
  blob_bytes     INTEGER NOT NULL,
  blob_count     INTEGER NOT NULL,
  manifest_bytes INTEGER NOT NULL,
  manifest_count INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS usage_blob_insert AFTER INSERT ON blobs BEGIN
  UPDATE usage SET blob_bytes = blob_bytes + NEW.size, blob_count = blob_count + 1 WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS usage_blob_delete AFTER DELETE ON blobs BEGIN
  UPDATE usage SET blob_bytes = blob_bytes - OLD.size, blob_count = blob_count - 1 WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS usage_blob_resize AFTER UPDATE OF size ON blobs BEGIN
  UPDATE usage SET blob_bytes = blob_bytes - OLD.size + NEW.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS usage_manifest_insert AFTER INSERT ON manifests BEGIN
  UPDATE usage SET manifest_bytes = manifest_bytes + NEW.size, manifest_count = manifest_count + 1 WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS usage_manifest_delete AFTER DELETE ON manifests BEGIN
  UPDATE usage SET manifest_bytes = manifest_bytes - OLD.size, manifest_count = manifest_count - 1 WHERE id = 0;
END;
`;

/** Totals recomputed from the tables: seeds the usage row and repairs it (cache/usage). */
export const RECOUNT_USAGE = `INSERT OR REPLACE INTO usage (id, blob_bytes, blob_count, manifest_bytes, manifest_count)
  SELECT 0, (SELECT COALESCE(SUM(size), 0) FROM blobs), (SELECT COUNT(*) FROM blobs),
            (SELECT COALESCE(SUM(size), 0) FROM manifests), (SELECT COUNT(*) FROM manifests)`;

/** Manifests read per batch when refs are backfilled, so a large cache is not loaded at once. */
const BACKFILL_BATCH = 500;

export interface BlobRow {
  digest: string;
  size: number;
  mediaType: string | null;
}

export interface ManifestRow {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface TagRow {
  digest: string;
  mediaType: string;
  fetchedAt: number;
}

export interface ListRow {
  status: number;
  contentType: string | null;
  link: string | null;
  body: Buffer;
  fetchedAt: number;
}

export interface MetadataOptions {
  /**
   * Flush interval for batched access-time and hit bumps (eviction, gc, the inventory and close
   * flush first, so nothing that reads them sees stale values). 30 s, not 1 s: the hot blobs of a
   * large cache sit on scattered pages, and with 100,000 blobs a flush every second rewrote ~200
   * pages each time and checkpointed the WAL every ~5 s; the cache-hit p99 of that mirror rose from
   * ~2 to 12–13 ms within half a minute of load (bench phase 7).
   */
  flushIntervalMs?: number;
  now?: () => number;
}

export class Metadata {
  readonly db: DB;
  readonly #now: () => number;
  readonly #stmt: Record<string, Statement>;
  /** digest → pending hit count, flushed in one transaction. */
  readonly #blobHits = new Map<string, number>();
  readonly #manifestHits = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;

  constructor(file: string, { flushIntervalMs = 30_000, now = Date.now }: MetadataOptions = {}) {
    this.#now = now;
    this.db = new Database(file);
    // WAL lets readers proceed during writes and survives a crash at any instant;
    // synchronous=NORMAL is durable across process crashes (only power loss can drop the last commits).
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      // A newer ocimirror wrote this database: refuse rather than guess at its tables.
      this.db.close();
      throw new Error(`metadata schema version ${version} is not supported (expected ${SCHEMA_VERSION} or older)`);
    }
    try {
      this.db.exec(SCHEMA);
      if (version < SCHEMA_VERSION) this.#migrate();
      else if (this.db.prepare('SELECT 1 FROM usage WHERE id = 0').get() === undefined) this.db.exec(RECOUNT_USAGE);
    } catch (err) {
      this.db.close();
      throw err;
    }

    const p = (sql: string) => this.db.prepare(sql);
    this.#stmt = {
      getBlob: p('SELECT digest, size, media_type AS mediaType FROM blobs WHERE digest = ?'),
      putBlob: p(`INSERT INTO blobs (digest, size, media_type, created_at, last_access, hits) VALUES (?, ?, ?, ?, ?, 0)
                  ON CONFLICT(digest) DO UPDATE SET size = excluded.size`),
      deleteBlob: p('DELETE FROM blobs WHERE digest = ?'),
      allBlobDigests: p('SELECT digest FROM blobs').pluck(),
      // '~' sorts after every hex digit, so the range is exactly the digests starting with the prefix.
      blobDigestsWithPrefix: p("SELECT digest FROM blobs WHERE digest >= 'sha256:' || ? AND digest < 'sha256:' || ? || '~'").pluck(),
      bumpBlob: p('UPDATE blobs SET last_access = ?, hits = hits + ? WHERE digest = ?'),
      getManifest: p('SELECT digest, media_type AS mediaType, bytes FROM manifests WHERE digest = ?'),
      putManifest: p(`INSERT INTO manifests (digest, media_type, size, bytes, created_at, last_access, hits) VALUES (?, ?, ?, ?, ?, ?, 0)
                      ON CONFLICT(digest) DO NOTHING`),
      putRef: p('INSERT OR IGNORE INTO refs (parent, child, kind) VALUES (?, ?, ?)'),
      bumpManifest: p('UPDATE manifests SET last_access = ?, hits = hits + ? WHERE digest = ?'),
      getTag: p('SELECT digest, media_type AS mediaType, fetched_at AS fetchedAt FROM tags WHERE upstream = ? AND repo = ? AND tag = ?'),
      putTag: p(`INSERT INTO tags (upstream, repo, tag, digest, media_type, fetched_at) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT(upstream, repo, tag) DO UPDATE SET digest = excluded.digest, media_type = excluded.media_type, fetched_at = excluded.fetched_at`),
      touchTag: p('UPDATE tags SET fetched_at = ? WHERE upstream = ? AND repo = ? AND tag = ?'),
      deleteTag: p('DELETE FROM tags WHERE upstream = ? AND repo = ? AND tag = ?'),
      tagsOf: p('SELECT tag FROM tags WHERE upstream = ? AND repo = ? ORDER BY tag').pluck(),
      hasLink: p('SELECT 1 FROM links WHERE upstream = ? AND repo = ? AND digest = ?').pluck(),
      putLink: p('INSERT OR IGNORE INTO links (upstream, repo, digest) VALUES (?, ?, ?)'),
      getList: p('SELECT status, content_type AS contentType, link, body, fetched_at AS fetchedAt FROM lists WHERE upstream = ? AND key = ?'),
      putList: p(`INSERT INTO lists (upstream, key, status, content_type, link, body, fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                  ON CONFLICT(upstream, key) DO UPDATE SET status = excluded.status, content_type = excluded.content_type,
                  link = excluded.link, body = excluded.body, fetched_at = excluded.fetched_at`),
    };
    this.#timer = setInterval(() => this.flush(), flushIntervalMs);
    this.#timer.unref();
  }

  now(): number {
    return this.#now();
  }

  /**
   * From version 0 (new, or created before versions were recorded) or 1 to the current schema,
   * in one transaction: the new tables exist already (CREATE IF NOT EXISTS); manifests stored
   * before refs existed get theirs from their bytes, and the usage row is seeded from the tables.
   */
  #migrate(): void {
    const page = this.db.prepare<[string], { digest: string; bytes: Buffer }>(
      `SELECT digest, bytes FROM manifests WHERE digest > ? ORDER BY digest LIMIT ${BACKFILL_BATCH}`,
    );
    const putRef = this.db.prepare('INSERT OR IGNORE INTO refs (parent, child, kind) VALUES (?, ?, ?)');
    this.db.transaction(() => {
      // Paged by digest rather than iterated: better-sqlite3 allows no writes while a read is open.
      for (let rows = page.all(''); rows.length > 0; rows = page.all(rows[rows.length - 1]!.digest)) {
        for (const m of rows) for (const r of manifestReferences(m.bytes)) putRef.run(m.digest, r.digest, r.kind);
      }
      this.db.exec(RECOUNT_USAGE);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }

  getBlob(digest: string): BlobRow | undefined {
    return this.#stmt.getBlob!.get(digest) as BlobRow | undefined;
  }

  /** Records a committed blob and, in the same transaction, the repository it was fetched for. */
  putBlob(row: BlobRow, link?: { upstream: string; repo: string }): void {
    this.db.transaction(() => {
      const now = this.#now();
      this.#stmt.putBlob!.run(row.digest, row.size, row.mediaType, now, now);
      if (link) this.#stmt.putLink!.run(link.upstream, link.repo, row.digest);
    })();
  }

  deleteBlob(digest: string): void {
    this.#stmt.deleteBlob!.run(digest);
  }

  allBlobDigests(): string[] {
    return this.#stmt.allBlobDigests!.all() as string[];
  }

  /** Digests of blobs whose hex starts with `hexPrefix` (a primary-key range scan). */
  blobDigestsWithPrefix(hexPrefix: string): string[] {
    return this.#stmt.blobDigestsWithPrefix!.all(hexPrefix, hexPrefix) as string[];
  }

  recordBlobHit(digest: string): void {
    this.#blobHits.set(digest, (this.#blobHits.get(digest) ?? 0) + 1);
  }

  getManifest(digest: string): ManifestRow | undefined {
    return this.#stmt.getManifest!.get(digest) as ManifestRow | undefined;
  }

  recordManifestHit(digest: string): void {
    this.#manifestHits.set(digest, (this.#manifestHits.get(digest) ?? 0) + 1);
  }

  /**
   * Stores a verified manifest, what it references (cache/references), its repository link and
   * (for a tag fetch) the tag, atomically.
   */
  putManifest(
    row: ManifestRow,
    link: { upstream: string; repo: string },
    tag?: string,
  ): void {
    this.db.transaction(() => {
      const now = this.#now();
      const inserted = this.#stmt.putManifest!.run(row.digest, row.mediaType, row.bytes.length, row.bytes, now, now).changes > 0;
      // The first bytes stored for a digest are kept, so their refs are already recorded.
      if (inserted) for (const r of manifestReferences(row.bytes)) this.#stmt.putRef!.run(row.digest, r.digest, r.kind);
      this.#stmt.putLink!.run(link.upstream, link.repo, row.digest);
      if (tag !== undefined) this.#stmt.putTag!.run(link.upstream, link.repo, tag, row.digest, row.mediaType, now);
    })();
  }

  getTag(upstream: string, repo: string, tag: string): TagRow | undefined {
    return this.#stmt.getTag!.get(upstream, repo, tag) as TagRow | undefined;
  }

  touchTag(upstream: string, repo: string, tag: string, at = this.#now()): void {
    this.#stmt.touchTag!.run(at, upstream, repo, tag);
  }

  deleteTag(upstream: string, repo: string, tag: string): void {
    this.#stmt.deleteTag!.run(upstream, repo, tag);
  }

  /** Tags cached for a repository: the tags/list answer when the upstream is unreachable. */
  cachedTags(upstream: string, repo: string): string[] {
    return this.#stmt.tagsOf!.all(upstream, repo) as string[];
  }

  hasLink(upstream: string, repo: string, digest: string): boolean {
    return this.#stmt.hasLink!.get(upstream, repo, digest) !== undefined;
  }

  putLink(upstream: string, repo: string, digest: string): void {
    this.#stmt.putLink!.run(upstream, repo, digest);
  }

  getList(upstream: string, key: string): ListRow | undefined {
    return this.#stmt.getList!.get(upstream, key) as ListRow | undefined;
  }

  putList(upstream: string, key: string, row: Omit<ListRow, 'fetchedAt'>): void {
    this.#stmt.putList!.run(upstream, key, row.status, row.contentType, row.link, row.body, this.#now());
  }

  /** Writes batched access-time bumps in one transaction. */
  flush(): void {
    if (this.#blobHits.size === 0 && this.#manifestHits.size === 0) return;
    const now = this.#now();
    this.db.transaction(() => {
      for (const [digest, n] of this.#blobHits) this.#stmt.bumpBlob!.run(now, n, digest);
      for (const [digest, n] of this.#manifestHits) this.#stmt.bumpManifest!.run(now, n, digest);
    })();
    this.#blobHits.clear();
    this.#manifestHits.clear();
  }

  close(): void {
    clearInterval(this.#timer);
    if (!this.db.open) return;
    this.flush();
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }
}
