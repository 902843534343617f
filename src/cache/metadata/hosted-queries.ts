/**
 * @module cache/metadata/hosted-queries
 * The `hosted_tags` and `hosted_links` tables (metadata/schema): what has been pushed to hosted
 * repositories. The bytes themselves are ordinary `blobs` and `manifests` rows shared with the
 * cache; a link is what makes them hosted. A digest is held (never evicted, never collected) while
 * any repository links it, or while a linked manifest references it as a config, layer or index
 * entry (a layer deleted from a repository stays while a manifest there still needs it).
 * Statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';

export type HostedLinkKind = 'blob' | 'manifest';

export interface HostedTagRow {
  digest: string;
  mediaType: string;
  pushedAt: number;
}

/** A manifest linked in a repository whose `subject` is a given digest. */
export interface HostedReferrerRow {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface HostedRegistryStats {
  registry: string;
  repositories: number;
  tags: number;
  manifests: number;
  blobs: number;
  /** Distinct digests' sizes linked in the registry (what its quota counts). */
  bytes: number;
}

export class HostedQueries {
  readonly #tag: Statement<[string, string, string], HostedTagRow>;
  readonly #putTag: Statement<[string, string, string, string, string, number]>;
  readonly #deleteTag: Statement<[string, string, string]>;
  readonly #deleteTagsTo: Statement<[string, string, string], string>;
  readonly #tagPage: Statement<[string, string, string, number], string>;
  readonly #link: Statement<[string, string, string], HostedLinkKind>;
  readonly #putLink: Statement<[string, string, string, HostedLinkKind, number]>;
  readonly #deleteLink: Statement<[string, string, string, HostedLinkKind]>;
  readonly #hasRepository: Statement<[string, string, string, string], number>;
  readonly #repositories: Statement<[string], string>;
  readonly #referrers: Statement<[string, string, string], HostedReferrerRow>;
  readonly #usedBytes: Statement<[string], number>;
  readonly #holds: Statement<[string, string], number>;
  readonly #heldBlobBytes: Statement<[], number>;
  readonly #deleteOrphanLinks: Statement<[]>;
  readonly #deleteOrphanTags: Statement<[]>;
  readonly #stats: Statement<[], HostedRegistryStats>;

  constructor(db: Database) {
    this.#tag = db.prepare('SELECT digest, media_type AS mediaType, pushed_at AS pushedAt FROM hosted_tags WHERE registry = ? AND repo = ? AND tag = ?');
    this.#putTag = db.prepare(`INSERT INTO hosted_tags (registry, repo, tag, digest, media_type, pushed_at) VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT(registry, repo, tag) DO UPDATE SET digest = excluded.digest, media_type = excluded.media_type, pushed_at = excluded.pushed_at`);
    this.#deleteTag = db.prepare('DELETE FROM hosted_tags WHERE registry = ? AND repo = ? AND tag = ?');
    this.#deleteTagsTo = db.prepare<[string, string, string], string>('DELETE FROM hosted_tags WHERE registry = ? AND repo = ? AND digest = ? RETURNING tag').pluck();
    // Binary order, as the cache's tag lists: keyset pagination on the primary key.
    this.#tagPage = db.prepare<[string, string, string, number], string>('SELECT tag FROM hosted_tags WHERE registry = ? AND repo = ? AND tag > ? ORDER BY tag LIMIT ?').pluck();
    this.#link = db.prepare<[string, string, string], HostedLinkKind>('SELECT kind FROM hosted_links WHERE registry = ? AND repo = ? AND digest = ?').pluck();
    // A digest pushed as a blob and later as a manifest (or the other way) keeps the manifest kind.
    this.#putLink = db.prepare(`INSERT INTO hosted_links (registry, repo, digest, kind, created_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(registry, repo, digest) DO UPDATE SET kind = 'manifest' WHERE excluded.kind = 'manifest'`);
    this.#deleteLink = db.prepare('DELETE FROM hosted_links WHERE registry = ? AND repo = ? AND digest = ? AND kind = ?');
    this.#hasRepository = db.prepare<[string, string, string, string], number>(`SELECT 1 WHERE EXISTS (SELECT 1 FROM hosted_links WHERE registry = ? AND repo = ?)
      OR EXISTS (SELECT 1 FROM hosted_tags WHERE registry = ? AND repo = ?)`).pluck();
    this.#repositories = db.prepare<[string], string>('SELECT DISTINCT repo FROM hosted_links WHERE registry = ? ORDER BY repo').pluck();
    this.#referrers = db.prepare(`SELECT m.digest, m.media_type AS mediaType, m.bytes FROM refs r
      JOIN hosted_links h ON h.registry = ? AND h.repo = ? AND h.digest = r.parent AND h.kind = 'manifest'
      JOIN manifests m ON m.digest = r.parent
      WHERE r.child = ? AND r.kind = 'subject' ORDER BY h.created_at, m.digest`);
    this.#usedBytes = db.prepare<[string], number>(`SELECT COALESCE(SUM(COALESCE(b.size, m.size, 0)), 0)
      FROM (SELECT DISTINCT digest FROM hosted_links WHERE registry = ?) d
      LEFT JOIN blobs b ON b.digest = d.digest LEFT JOIN manifests m ON m.digest = d.digest`).pluck();
    this.#holds = db.prepare<[string, string], number>(`SELECT 1 WHERE EXISTS (SELECT 1 FROM hosted_links WHERE digest = ?)
      OR EXISTS (SELECT 1 FROM refs r JOIN hosted_links h ON h.digest = r.parent AND h.kind = 'manifest' WHERE r.child = ? AND r.kind IN ('blob', 'manifest'))`).pluck();
    this.#heldBlobBytes = db.prepare<[], number>(`SELECT COALESCE(SUM(size), 0) FROM blobs WHERE digest IN (
        SELECT digest FROM hosted_links
        UNION SELECT r.child FROM hosted_links h JOIN refs r ON r.parent = h.digest AND r.kind IN ('blob', 'manifest') WHERE h.kind = 'manifest')`).pluck();
    this.#deleteOrphanLinks = db.prepare(`DELETE FROM hosted_links WHERE digest NOT IN (SELECT digest FROM blobs)
      AND digest NOT IN (SELECT digest FROM manifests)`);
    this.#deleteOrphanTags = db.prepare('DELETE FROM hosted_tags WHERE digest NOT IN (SELECT digest FROM manifests)');
    this.#stats = db.prepare(`SELECT l.registry,
        COUNT(DISTINCT l.repo) AS repositories,
        (SELECT COUNT(*) FROM hosted_tags t WHERE t.registry = l.registry) AS tags,
        COUNT(DISTINCT CASE WHEN l.kind = 'manifest' THEN l.digest END) AS manifests,
        COUNT(DISTINCT CASE WHEN l.kind = 'blob' THEN l.digest END) AS blobs,
        (SELECT COALESCE(SUM(COALESCE(b.size, m.size, 0)), 0) FROM (SELECT DISTINCT digest FROM hosted_links WHERE registry = l.registry) d
          LEFT JOIN blobs b ON b.digest = d.digest LEFT JOIN manifests m ON m.digest = d.digest) AS bytes
      FROM hosted_links l GROUP BY l.registry ORDER BY l.registry`);
  }

  tag(registry: string, repo: string, tag: string): HostedTagRow | undefined {
    return this.#tag.get(registry, repo, tag);
  }

  /** Points a tag at a manifest, moving it if it pointed elsewhere. */
  putTag(registry: string, repo: string, tag: string, row: HostedTagRow): void {
    this.#putTag.run(registry, repo, tag, row.digest, row.mediaType, row.pushedAt);
  }

  /** Removes a tag; false when there was none. */
  deleteTag(registry: string, repo: string, tag: string): boolean {
    return this.#deleteTag.run(registry, repo, tag).changes > 0;
  }

  /** Removes every tag of the repository pointing at `digest`; returns their names. */
  deleteTagsTo(registry: string, repo: string, digest: string): string[] {
    return this.#deleteTagsTo.all(registry, repo, digest);
  }

  /** Up to `limit` tag names after `after` ('' for the first page), in binary order. */
  tagPage(registry: string, repo: string, after: string, limit: number): string[] {
    return this.#tagPage.all(registry, repo, after, limit);
  }

  /** How `digest` is linked in the repository, if it is. */
  link(registry: string, repo: string, digest: string): HostedLinkKind | undefined {
    return this.#link.get(registry, repo, digest);
  }

  /** Links a digest into a repository; a link already there keeps its time (and a manifest kind). */
  putLink(registry: string, repo: string, digest: string, kind: HostedLinkKind, at: number): void {
    this.#putLink.run(registry, repo, digest, kind, at);
  }

  /** Unlinks a digest linked as `kind`; false when it was not. */
  deleteLink(registry: string, repo: string, digest: string, kind: HostedLinkKind): boolean {
    return this.#deleteLink.run(registry, repo, digest, kind).changes > 0;
  }

  /** Whether the repository has anything linked or tagged. */
  hasRepository(registry: string, repo: string): boolean {
    return this.#hasRepository.get(registry, repo, registry, repo) !== undefined;
  }

  /** Repositories of a registry with anything linked, in binary order. */
  repositories(registry: string): string[] {
    return this.#repositories.all(registry);
  }

  /** Manifests linked in the repository whose `subject` is `subject`, oldest link first. */
  referrers(registry: string, repo: string, subject: string): HostedReferrerRow[] {
    return this.#referrers.all(registry, repo, subject);
  }

  /** Sum of the sizes of the distinct digests linked anywhere in the registry. */
  usedBytes(registry: string): number {
    return this.#usedBytes.get(registry) ?? 0;
  }

  /** Whether `digest` is hosted content: linked somewhere, or needed by a linked manifest. */
  holds(digest: string): boolean {
    return this.#holds.get(digest, digest) !== undefined;
  }

  /** Bytes of the blobs hosted content holds (they are outside the cache's quota). */
  heldBlobBytes(): number {
    return this.#heldBlobBytes.get() ?? 0;
  }

  /** Deletes links to digests stored nowhere and tags to manifests not stored; returns how many. */
  deleteOrphans(): { links: number; tags: number } {
    const links = this.#deleteOrphanLinks.run().changes;
    return { links, tags: this.#deleteOrphanTags.run().changes };
  }

  /** Per-registry counts, for the console and metrics. */
  stats(): HostedRegistryStats[] {
    return this.#stats.all();
  }
}
