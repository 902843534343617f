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
import type { BlobCache } from '../blobs/blob-cache.ts';
import type { HotCache } from '../hot-cache.ts';
import type { Metadata } from '../metadata/metadata.ts';
import type { TagKey } from '../metadata/tag-queries.ts';

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

/** Unlinks issued at once: enough to keep the thread pool busy, few enough to leave it to requests too. */
const UNLINK_PARALLEL = 16;

export class ContentRemover {
  readonly #metadata: Metadata;
  readonly #blobs: BlobCache;
  readonly #hot: HotCache;

  constructor({ metadata, blobs, hot }: { metadata: Metadata; blobs: BlobCache; hot: HotCache }) {
    this.#metadata = metadata;
    this.#blobs = blobs;
    this.#hot = hot;
  }

  /**
   * Removes the rows, synchronously, and forgets the matching hot-cache entries. Call it inside
   * the transaction that chose what to remove (metadata.transaction), so choosing and removing
   * are one atomic step.
   * (Should that transaction roll back, the hot cache merely lost entries it reloads from SQLite.)
   */
  removeRows({ manifests = [], blobs = [], tags = [] }: RemovalRequest): Removal {
    const { manifests: manifestRows, blobs: blobRows, tags: tagRows, links: linkRows, refs } = this.#metadata;
    const removal = { manifests: [] as string[], blobs: [] as { digest: string; size: number }[], tags: [] as TagKey[], links: 0, bytes: 0 };
    const dropLinks = (digest: string) => {
      for (const l of linkRows.deleteTo(digest)) {
        this.#hot.deleteLink(l.upstream, l.repo, digest);
        removal.links++;
      }
    };
    const dropTag = (t: TagKey) => {
      this.#hot.deleteTag(t.upstream, t.repo, t.tag);
      removal.tags.push(t);
    };
    for (const t of tags) {
      const removed = tagRows.delete(t.upstream, t.repo, t.tag);
      if (removed !== undefined) dropTag(removed);
    }
    for (const digest of manifests) {
      this.#hot.deleteManifest(digest);
      refs.deleteOf(digest);
      for (const t of tagRows.deletePointingAt(digest)) dropTag(t);
      dropLinks(digest);
      if (manifestRows.delete(digest)) removal.manifests.push(digest);
    }
    for (const digest of blobs) {
      dropLinks(digest);
      const size = blobRows.delete(digest);
      if (size === undefined) continue;
      removal.blobs.push({ digest, size });
      removal.bytes += size;
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
