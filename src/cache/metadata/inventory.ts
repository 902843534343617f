/**
 * @module cache/metadata/inventory
 * What the cache holds, per repository, for the admin API: tags (with the digest and when the
 * upstream last confirmed them), bytes of blobs linked to the repository, last access and hits.
 */
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
  readonly #metadata: Metadata;

  constructor(metadata: Metadata) {
    this.#metadata = metadata;
  }

  repositories(): RepositoryView[] {
    this.#metadata.flush(); // hits and access times batched since the last flush count too
    const byKey = new Map<string, RepositoryView>();
    for (const r of this.#metadata.usage.repositories()) {
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
    for (const t of this.#metadata.tags.all()) {
      byKey.get(`${t.upstream}\0${t.repo}`)?.tags.push({ tag: t.tag, digest: t.digest, mediaType: t.mediaType, fetchedAt: new Date(t.fetchedAt).toISOString() });
    }
    return [...byKey.values()];
  }
}
