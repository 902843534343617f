/**
 * @module cache/metadata/manifest-queries
 * The `manifests` table: every cached manifest with its exact bytes (a manifest's digest is over
 * its bytes, so they are served back byte for byte). Statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';
import type { AccessRow } from './blob-queries.ts';

export interface ManifestRow {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export class ManifestQueries {
  readonly #get: Statement<[string], ManifestRow>;
  readonly #has: Statement<[string], number>;
  readonly #insert: Statement<[string, string, number, Buffer, number, number]>;
  readonly #delete: Statement<[string]>;
  readonly #bump: Statement<[number, number, string]>;
  readonly #access: Statement<[string], AccessRow>;

  constructor(db: Database) {
    this.#get = db.prepare('SELECT digest, media_type AS mediaType, bytes FROM manifests WHERE digest = ?');
    this.#has = db.prepare<[string], number>('SELECT 1 FROM manifests WHERE digest = ?').pluck();
    this.#insert = db.prepare(`INSERT INTO manifests (digest, media_type, size, bytes, created_at, last_access, hits) VALUES (?, ?, ?, ?, ?, ?, 0)
      ON CONFLICT(digest) DO NOTHING`);
    this.#delete = db.prepare('DELETE FROM manifests WHERE digest = ?');
    this.#bump = db.prepare('UPDATE manifests SET last_access = ?, hits = hits + ? WHERE digest = ?');
    this.#access = db.prepare('SELECT created_at AS createdAt, last_access AS lastAccess, hits FROM manifests WHERE digest = ?');
  }

  get(digest: string): ManifestRow | undefined {
    return this.#get.get(digest);
  }

  has(digest: string): boolean {
    return this.#has.get(digest) !== undefined;
  }

  /** Stores a manifest used now; false when the digest was stored already (the first bytes are kept). */
  insert(row: ManifestRow, now: number): boolean {
    return this.#insert.run(row.digest, row.mediaType, row.bytes.length, row.bytes, now, now).changes > 0;
  }

  /** Deletes a row; false when there was none. */
  delete(digest: string): boolean {
    return this.#delete.run(digest).changes > 0;
  }

  /** Adds `hits` and sets the last access (a batched flush of cache hits). */
  recordHits(digest: string, hits: number, at: number): void {
    this.#bump.run(at, hits, digest);
  }

  access(digest: string): AccessRow | undefined {
    return this.#access.get(digest);
  }
}
