/**
 * @module cache/lifecycle/removal
 * Takes content out of the cache consistently, for eviction, image deletion and gc alike:
 * blob rows, manifests with their `refs` rows, the tags pointing at removed manifests and every
 * repository link to a removed digest go in the caller's transaction, the matching hot-cache
 * entries with them, and the blob files after the commit. Rows go before files so a crash in
 * between leaves files without rows (start-up reconcile and gc remove those), never a row
 * promising a file that is gone. A tag or link left pointing at nothing would make the mirror
 * answer from a manifest whose layers are gone; dropping them makes the next pull re-resolve.
 */
import type { Statement } from 'better-sqlite3';
import type { BlobCache } from '../blobs/blob-cache.ts';
import type { HotCache } from '../hot-cache.ts';
import type { Metadata } from '../metadata/metadata.ts';

export interface TagKey {
  readonly upstream: string;
  readonly repo: string;
  readonly tag: string;
}

export interface RemovalRequest {
  readonly manifests?: Iterable<string>;
  readonly blobs?: Iterable<string>;
  /** Tags to remove even though their manifest stays. */
  readonly tags?: Iterable<TagKey>;
}

export interface Removal {
  /** Manifests whose rows were removed (those not cached are left out). */
  readonly manifests: string[];
  /** Blobs whose rows were removed, with their sizes; their files are unlinked by {@link ContentRemover.unlink}. */
  readonly blobs: { digest: string; size: number }[];
  readonly tags: TagKey[];
  readonly links: number;
  /** Sum of the removed blobs' sizes. */
  readonly bytes: number;
}

type LinkKey = { upstream: string; repo: string };

/** Unlinks issued at once: enough to keep the thread pool busy, few enough to leave it to requests too. */
const UNLINK_PARALLEL = 16;

export class ContentRemover {
  readonly #metadata: Metadata;
  readonly #blobs: BlobCache;
  readonly #hot: HotCache;
  readonly #deleteBlob: Statement<[string], { size: number }>;
  readonly #deleteManifest: Statement<[string]>;
  readonly #deleteRefs: Statement<[string]>;
  readonly #deleteTagsOf: Statement<[string], TagKey>;
  readonly #deleteTag: Statement<[string, string, string], TagKey>;
  readonly #deleteLinks: Statement<[string], LinkKey>;

  constructor({ metadata, blobs, hot }: { metadata: Metadata; blobs: BlobCache; hot: HotCache }) {
    this.#metadata = metadata;
    this.#blobs = blobs;
    this.#hot = hot;
    const db = metadata.db;
    this.#deleteBlob = db.prepare<[string], { size: number }>('DELETE FROM blobs WHERE digest = ? RETURNING size');
    this.#deleteManifest = db.prepare<[string]>('DELETE FROM manifests WHERE digest = ?');
    this.#deleteRefs = db.prepare<[string]>('DELETE FROM refs WHERE parent = ?');
    this.#deleteTagsOf = db.prepare<[string], TagKey>('DELETE FROM tags WHERE digest = ? RETURNING upstream, repo, tag');
    this.#deleteTag = db.prepare<[string, string, string], TagKey>('DELETE FROM tags WHERE upstream = ? AND repo = ? AND tag = ? RETURNING upstream, repo, tag');
    this.#deleteLinks = db.prepare<[string], LinkKey>('DELETE FROM links WHERE digest = ? RETURNING upstream, repo');
  }

  /**
   * Removes the rows, synchronously, and forgets the matching hot-cache entries. Call it inside
   * the transaction that chose what to remove, so choosing and removing are one atomic step.
   * (Should that transaction roll back, the hot cache merely lost entries it reloads from SQLite.)
   */
  removeRows({ manifests = [], blobs = [], tags = [] }: RemovalRequest): Removal {
    const removal = { manifests: [] as string[], blobs: [] as { digest: string; size: number }[], tags: [] as TagKey[], links: 0, bytes: 0 };
    const dropLinks = (digest: string) => {
      for (const l of this.#deleteLinks.all(digest)) {
        this.#hot.deleteLink(l.upstream, l.repo, digest);
        removal.links++;
      }
    };
    const dropTag = (t: TagKey) => {
      this.#hot.deleteTag(t.upstream, t.repo, t.tag);
      removal.tags.push(t);
    };
    for (const t of tags) for (const removed of this.#deleteTag.all(t.upstream, t.repo, t.tag)) dropTag(removed);
    for (const digest of manifests) {
      this.#hot.deleteManifest(digest);
      this.#deleteRefs.run(digest);
      for (const t of this.#deleteTagsOf.all(digest)) dropTag(t);
      dropLinks(digest);
      if (this.#deleteManifest.run(digest).changes > 0) removal.manifests.push(digest);
    }
    for (const digest of blobs) {
      dropLinks(digest);
      const row = this.#deleteBlob.get(digest);
      if (row === undefined) continue;
      removal.blobs.push({ digest, size: row.size });
      removal.bytes += row.size;
    }
    return removal;
  }

  /**
   * Unlinks the files of removed blobs, after the transaction committed. A reader that already
   * opened a file keeps reading it (unlink leaves an open descriptor alone). A blob fetched again
   * meanwhile is left alone: its new fill renames its own verified file into place.
   */
  async unlink(removal: Removal): Promise<void> {
    for (let i = 0; i < removal.blobs.length; i += UNLINK_PARALLEL) {
      const chunk = removal.blobs.slice(i, i + UNLINK_PARALLEL);
      const gone = chunk.filter(({ digest }) => this.#blobs.inflight(digest) === undefined && this.#metadata.getBlob(digest) === undefined);
      await Promise.all(gone.map(({ digest }) => this.#blobs.store.remove(digest.slice('sha256:'.length))));
    }
  }
}
