/**
 * @module cache/metadata/schema
 * The tables of the metadata database, how a database is opened, and how an older one is brought
 * up to date. Only this module writes DDL for the cache's tables; the `*-queries` modules beside it
 * hold every statement that reads or writes them (jobs/job-store owns the `jobs` table).
 *
 * ```
 * ocimirror.db (WAL, user_version = SCHEMA_VERSION)
 * ├── blobs      digest PK · size · media_type · created_at · last_access · hits   committed blob files (blob-queries)
 * ├── manifests  digest PK · media_type · size · bytes · created_at · last_access · hits
 * │                                                         exact manifest bytes, served from here (manifest-queries)
 * ├── tags       (upstream, repo, tag) PK · digest · media_type · fetched_at      tag → manifest, when confirmed (tag-queries)
 * ├── links      (upstream, repo, digest) PK     which repositories are known to hold a digest (link-queries)
 * ├── lists      (upstream, key) PK · status · content_type · link · body · fetched_at
 * │                                              cached tags/list and referrers answers (list-queries)
 * ├── refs       (parent, child) PK · kind       what each cached manifest references (references)
 * ├── pins       ref PK · created_at             pins added through the admin API (pin-queries)
 * ├── usage      id = 0 · blob_bytes · blob_count · manifest_bytes · manifest_count
 * │                                              running totals kept by triggers on blobs and manifests (usage-queries)
 * ├── robot_tokens id PK · hash · role · description · created_at · expires_at
 * │                                              client robot tokens, secrets stored hashed (robot-token-queries)
 * ├── hosted_tags  (registry, repo, tag) PK · digest · media_type · pushed_at
 * │                                              tags pushed to hosted repositories, never expired (hosted-queries)
 * ├── hosted_links (registry, repo, digest) PK · kind · created_at
 * │                                              blobs and manifests pushed or mounted into a hosted repository;
 * │                                              what they hold is never evicted nor collected (hosted-queries)
 * ├── bucket_blobs digest PK · size · seen_at    blobs known committed in the shared bucket (bucket-queries)
 * ├── series     minute PK · served_cache_bytes · served_upstream_bytes · upstream_bytes · hits · misses ·
 * │              cache_bytes · blobs            one row per minute of traffic and usage, kept 8 days,
 * │                                              for the console's charts (series-queries, metrics/time-series)
 * └── jobs       owned by jobs/job-store
 * ```
 */
import type { Database } from 'better-sqlite3';
import { manifestReferences } from './manifest-references.ts';

/**
 * 1: blobs, manifests, tags, links, lists.
 * 2: refs, pins, usage (+ triggers). A version 1 database is migrated when opened.
 * 3: robot_tokens (created empty, nothing to migrate).
 * 4: hosted_tags, hosted_links (created empty, nothing to migrate).
 * 5: bucket_blobs (created empty; filled from a listing of the bucket when one is configured).
 * 6: series (created empty, nothing to migrate).
 */
export const SCHEMA_VERSION = 6;

const TABLES = `
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
-- What a cached manifest references: kind 'manifest' | 'blob' | 'subject' (metadata/references).
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
-- Client robot tokens (auth/robot-tokens): only a SHA-256 of the secret is kept, so a copy of the
-- database does not hand out credentials.
CREATE TABLE IF NOT EXISTS robot_tokens (
  id          TEXT PRIMARY KEY,
  hash        BLOB NOT NULL,
  role        TEXT NOT NULL,
  description TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER
) WITHOUT ROWID;
-- Hosted repositories (pushed content). kind is 'blob' | 'manifest'; the bytes live in blobs and
-- manifests like cached content, and a link keeps them (and what a linked manifest references) in.
CREATE TABLE IF NOT EXISTS hosted_tags (
  registry    TEXT NOT NULL,
  repo        TEXT NOT NULL,
  tag         TEXT NOT NULL,
  digest      TEXT NOT NULL,
  media_type  TEXT NOT NULL,
  pushed_at   INTEGER NOT NULL,
  PRIMARY KEY (registry, repo, tag)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hosted_links (
  registry    TEXT NOT NULL,
  repo        TEXT NOT NULL,
  digest      TEXT NOT NULL,
  kind        TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (registry, repo, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hosted_links_digest ON hosted_links(digest);
-- Blobs committed in the shared bucket (storage.backend s3): immutable facts, rebuilt from a listing.
CREATE TABLE IF NOT EXISTS bucket_blobs (
  digest      TEXT PRIMARY KEY,
  size        INTEGER NOT NULL,
  seen_at     INTEGER NOT NULL
) WITHOUT ROWID;
-- Per minute (epoch minute): bytes served from the cache (HIT, STALE) and from the upstream (MISS),
-- bytes fetched upstream, requests by result, and the cache's size at the end of the minute.
CREATE TABLE IF NOT EXISTS series (
  minute                INTEGER PRIMARY KEY,
  served_cache_bytes    INTEGER NOT NULL,
  served_upstream_bytes INTEGER NOT NULL,
  upstream_bytes        INTEGER NOT NULL,
  hits                  INTEGER NOT NULL,
  misses                INTEGER NOT NULL,
  cache_bytes           INTEGER NOT NULL,
  blobs                 INTEGER NOT NULL
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

/** Totals recomputed from the tables: seeds the usage row and repairs it (usage-queries). */
export const RECOUNT_USAGE = `INSERT OR REPLACE INTO usage (id, blob_bytes, blob_count, manifest_bytes, manifest_count)
  SELECT 0, (SELECT COALESCE(SUM(size), 0) FROM blobs), (SELECT COUNT(*) FROM blobs),
            (SELECT COALESCE(SUM(size), 0) FROM manifests), (SELECT COUNT(*) FROM manifests)`;

/** Manifests read per batch when refs are backfilled, so a large cache is not loaded at once. */
const BACKFILL_BATCH = 500;

/**
 * Sets the pragmas the cache relies on and brings the tables to SCHEMA_VERSION. Throws for a
 * database written by a newer version, before touching it; the caller closes the connection.
 */
export function openSchema(db: Database): void {
  // WAL lets readers proceed during writes and survives a crash at any instant;
  // synchronous=NORMAL is durable across process crashes (only power loss can drop the last commits).
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    // A newer ocimirror wrote this database: refuse rather than guess at its tables.
    throw new Error(`metadata schema version ${version} is not supported (expected ${SCHEMA_VERSION} or older)`);
  }
  db.exec(TABLES);
  if (version < SCHEMA_VERSION) migrate(db, version);
  else if (db.prepare('SELECT 1 FROM usage WHERE id = 0').get() === undefined) db.exec(RECOUNT_USAGE);
}

/**
 * From version 0 (new, or created before versions were recorded) or 1 to the current schema,
 * in one transaction: the new tables exist already (CREATE IF NOT EXISTS); manifests stored
 * before refs existed get theirs from their bytes, and the usage row is seeded from the tables.
 */
function migrate(db: Database, from: number): void {
  const page = db.prepare<[string], { digest: string; bytes: Buffer }>(
    `SELECT digest, bytes FROM manifests WHERE digest > ? ORDER BY digest LIMIT ${BACKFILL_BATCH}`,
  );
  const putRef = db.prepare('INSERT OR IGNORE INTO refs (parent, child, kind) VALUES (?, ?, ?)');
  db.transaction(() => {
    // Paged by digest rather than iterated: better-sqlite3 allows no writes while a read is open.
    // Version 2 databases have their refs already; 3, 4, 5 and 6 only added tables.
    if (from < 2) for (let rows = page.all(''); rows.length > 0; rows = page.all(rows[rows.length - 1]!.digest)) {
      for (const m of rows) for (const r of manifestReferences(m.bytes)) putRef.run(m.digest, r.digest, r.kind);
    }
    db.exec(RECOUNT_USAGE);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
}
