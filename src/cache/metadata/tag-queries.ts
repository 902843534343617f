/**
 * @module cache/metadata/tag-queries
 * The `tags` table: which manifest digest a tag of a repository (per upstream) named when the
 * upstream last confirmed it. Statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';

export interface TagRow {
  digest: string;
  mediaType: string;
  fetchedAt: number;
}

export interface TagKey {
  readonly upstream: string;
  readonly repo: string;
  readonly tag: string;
}

export type TagEntry = TagKey & TagRow;

export class TagQueries {
  readonly #get: Statement<[string, string, string], TagRow>;
  readonly #put: Statement<[string, string, string, string, string, number]>;
  readonly #touch: Statement<[number, string, string, string]>;
  readonly #delete: Statement<[string, string, string], TagKey>;
  readonly #namesIn: Statement<[string, string], string>;
  readonly #pointingAt: Statement<[string, string, string], TagKey>;
  readonly #isTagged: Statement<[string], number>;
  readonly #deletePointingAt: Statement<[string], TagKey>;
  readonly #deleteOrphans: Statement<[], TagKey>;
  readonly #all: Statement<[], TagEntry>;
  readonly #staleCount: Statement<[string, number], number>;

  constructor(db: Database) {
    this.#get = db.prepare('SELECT digest, media_type AS mediaType, fetched_at AS fetchedAt FROM tags WHERE upstream = ? AND repo = ? AND tag = ?');
    this.#put = db.prepare(`INSERT INTO tags (upstream, repo, tag, digest, media_type, fetched_at) VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT(upstream, repo, tag) DO UPDATE SET digest = excluded.digest, media_type = excluded.media_type, fetched_at = excluded.fetched_at`);
    this.#touch = db.prepare('UPDATE tags SET fetched_at = ? WHERE upstream = ? AND repo = ? AND tag = ?');
    this.#delete = db.prepare('DELETE FROM tags WHERE upstream = ? AND repo = ? AND tag = ? RETURNING upstream, repo, tag');
    this.#namesIn = db.prepare<[string, string], string>('SELECT tag FROM tags WHERE upstream = ? AND repo = ? ORDER BY tag').pluck();
    this.#pointingAt = db.prepare('SELECT upstream, repo, tag FROM tags WHERE upstream = ? AND repo = ? AND digest = ?');
    this.#isTagged = db.prepare<[string], number>('SELECT 1 FROM tags WHERE digest = ? LIMIT 1').pluck();
    this.#deletePointingAt = db.prepare('DELETE FROM tags WHERE digest = ? RETURNING upstream, repo, tag');
    this.#deleteOrphans = db.prepare('DELETE FROM tags WHERE digest NOT IN (SELECT digest FROM manifests) RETURNING upstream, repo, tag');
    this.#all = db.prepare('SELECT upstream, repo, tag, digest, media_type AS mediaType, fetched_at AS fetchedAt FROM tags ORDER BY upstream, repo, tag');
    this.#staleCount = db.prepare<[string, number], number>('SELECT COUNT(*) FROM tags WHERE upstream = ? AND fetched_at < ?').pluck();
  }

  get(upstream: string, repo: string, tag: string): TagRow | undefined {
    return this.#get.get(upstream, repo, tag);
  }

  /** Points a tag at a manifest, confirmed at `fetchedAt`. */
  put(key: TagKey, row: TagRow): void {
    this.#put.run(key.upstream, key.repo, key.tag, row.digest, row.mediaType, row.fetchedAt);
  }

  /** Records that the upstream confirmed the tag again at `at`. */
  touch(upstream: string, repo: string, tag: string, at: number): void {
    this.#touch.run(at, upstream, repo, tag);
  }

  /** Deletes one tag; returns it when it existed. */
  delete(upstream: string, repo: string, tag: string): TagKey | undefined {
    return this.#delete.get(upstream, repo, tag);
  }

  /** How many of an upstream's tags were last confirmed before `before` (stale while it is offline). */
  staleCount(upstream: string, before: number): number {
    return this.#staleCount.get(upstream, before) ?? 0;
  }

  /** Tag names cached for a repository, in order. */
  namesIn(upstream: string, repo: string): string[] {
    return this.#namesIn.all(upstream, repo);
  }

  /** Tags of one repository pointing at `digest`. */
  pointingAt(upstream: string, repo: string, digest: string): TagKey[] {
    return this.#pointingAt.all(upstream, repo, digest);
  }

  /** Whether any tag, in any repository, points at `digest`. */
  isTagged(digest: string): boolean {
    return this.#isTagged.get(digest) !== undefined;
  }

  /** Deletes every tag pointing at `digest`; returns them. */
  deletePointingAt(digest: string): TagKey[] {
    return this.#deletePointingAt.all(digest);
  }

  /** Deletes tags pointing at a manifest that is not cached; returns them. */
  deleteOrphans(): TagKey[] {
    return this.#deleteOrphans.all();
  }

  /** Every tag, ordered by upstream, repository and tag. */
  all(): TagEntry[] {
    return this.#all.all();
  }
}
