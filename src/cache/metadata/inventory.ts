/**
 * @module cache/metadata/inventory
 * What the cache holds, per repository, for the admin API: tags (with the digest and when the
 * upstream last confirmed them), bytes of blobs linked to the repository, last access and hits.
 */
import type { Statement } from 'better-sqlite3';
import type { Metadata } from './metadata.ts';

export interface RepositoryView {
  upstream: string;
  repo: string;
  tags: Array<{ tag: string; digest: string; mediaType: string; fetchedAt: string }>;
  blobs: number;
  bytes: number;
  lastAccess: string | null;
  hits: number;
}

export class Inventory {
  readonly #repos: Statement<[], { upstream: string; repo: string; blobs: number; bytes: number; lastAccess: number | null; hits: number }>;
  readonly #tags: Statement<[], { upstream: string; repo: string; tag: string; digest: string; mediaType: string; fetchedAt: number }>;

  readonly #metadata: Metadata;

  constructor(metadata: Metadata) {
    this.#metadata = metadata;
    this.#repos = metadata.db.prepare(`
      SELECT r.upstream, r.repo, COUNT(b.digest) AS blobs, COALESCE(SUM(b.size), 0) AS bytes,
             MAX(b.last_access) AS lastAccess, COALESCE(SUM(b.hits), 0) AS hits
      FROM (SELECT upstream, repo FROM links UNION SELECT upstream, repo FROM tags) r
      LEFT JOIN links l ON l.upstream = r.upstream AND l.repo = r.repo
      LEFT JOIN blobs b ON b.digest = l.digest
      GROUP BY r.upstream, r.repo ORDER BY r.upstream, r.repo`);
    this.#tags = metadata.db.prepare('SELECT upstream, repo, tag, digest, media_type AS mediaType, fetched_at AS fetchedAt FROM tags ORDER BY upstream, repo, tag');
  }

  repositories(): RepositoryView[] {
    this.#metadata.flush(); // hits and access times batched since the last flush count too
    const byKey = new Map<string, RepositoryView>();
    for (const r of this.#repos.all()) {
      byKey.set(`${r.upstream}\0${r.repo}`, {
        upstream: r.upstream,
        repo: r.repo,
        tags: [],
        blobs: r.blobs,
        bytes: r.bytes,
        lastAccess: r.lastAccess === null ? null : new Date(r.lastAccess).toISOString(),
        hits: r.hits,
      });
    }
    for (const t of this.#tags.all()) {
      byKey.get(`${t.upstream}\0${t.repo}`)?.tags.push({ tag: t.tag, digest: t.digest, mediaType: t.mediaType, fetchedAt: new Date(t.fetchedAt).toISOString() });
    }
    return [...byKey.values()];
  }
}
