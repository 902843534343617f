/**
 * @module cache/metadata
 * SQLite (WAL) metadata for the cache: which blobs are committed, manifests with their exact
 * bytes, tags with when they were last confirmed upstream, which repositories (per upstream)
 * are known to hold which digests, and cached list responses (tags/list, referrers).
 * All statements are prepared once; access-time bumps are batched into one transaction a second
 * so a cache hit costs one indexed read and no write.
 */
import Database from 'better-sqlite3';
import type { Database as DB, Statement } from 'better-sqlite3';

const SCHEMA_VERSION = 1;

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
`;

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
  /** Flush interval for batched access-time bumps. */
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

  constructor(file: string, { flushIntervalMs = 1000, now = Date.now }: MetadataOptions = {}) {
    this.#now = now;
    this.db = new Database(file);
    // WAL lets readers proceed during writes and survives a crash at any instant;
    // synchronous=NORMAL is durable across process crashes (only power loss can drop the last commits).
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version === 0) this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    else if (version !== SCHEMA_VERSION) {
      this.db.close();
      throw new Error(`metadata schema version ${version} is not supported (expected ${SCHEMA_VERSION})`);
    }

    const p = (sql: string) => this.db.prepare(sql);
    this.#stmt = {
      getBlob: p('SELECT digest, size, media_type AS mediaType FROM blobs WHERE digest = ?'),
      putBlob: p(`INSERT INTO blobs (digest, size, media_type, created_at, last_access, hits) VALUES (?, ?, ?, ?, ?, 0)
                  ON CONFLICT(digest) DO UPDATE SET size = excluded.size`),
      deleteBlob: p('DELETE FROM blobs WHERE digest = ?'),
      allBlobDigests: p('SELECT digest FROM blobs').pluck(),
      bumpBlob: p('UPDATE blobs SET last_access = ?, hits = hits + ? WHERE digest = ?'),
      getManifest: p('SELECT digest, media_type AS mediaType, bytes FROM manifests WHERE digest = ?'),
      putManifest: p(`INSERT INTO manifests (digest, media_type, size, bytes, created_at, last_access, hits) VALUES (?, ?, ?, ?, ?, ?, 0)
                      ON CONFLICT(digest) DO NOTHING`),
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

  recordBlobHit(digest: string): void {
    this.#blobHits.set(digest, (this.#blobHits.get(digest) ?? 0) + 1);
  }

  getManifest(digest: string): ManifestRow | undefined {
    return this.#stmt.getManifest!.get(digest) as ManifestRow | undefined;
  }

  recordManifestHit(digest: string): void {
    this.#manifestHits.set(digest, (this.#manifestHits.get(digest) ?? 0) + 1);
  }

  /** Stores a verified manifest, its repository link and (for a tag fetch) the tag, atomically. */
  putManifest(
    row: ManifestRow,
    link: { upstream: string; repo: string },
    tag?: string,
  ): void {
    this.db.transaction(() => {
      const now = this.#now();
      this.#stmt.putManifest!.run(row.digest, row.mediaType, row.bytes.length, row.bytes, now, now);
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
