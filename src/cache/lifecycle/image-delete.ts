/**
 * @module cache/lifecycle/image-delete
 * Deletes one cached image (`name:tag` or `name@digest`), for the admin API's delete job:
 * the tag (for a digest, every tag of that repository pointing at it), then each manifest no
 * remaining tag or manifest needs (recursively down an index, and with it its untagged
 * referrers, which are about nothing once it is gone), then each blob no remaining manifest
 * references. Exactly those: a layer another cached image uses stays, in any repository.
 *
 * Pinned content is not removed, and a tag whose manifest is pinned stays too (removing it would
 * quietly unpin a tag pin): both are reported in `pinned`. Unpin first to delete. Hosted content
 * (metadata/hosted-queries `holds`) is never removed here either: pushed images are deleted
 * through the registry API of their hosted repository.
 *
 * Blobs being read are removed all the same (row now, file unlinked after the commit): an open
 * reader keeps its descriptor and finishes, and a deletion asked for by an operator should not
 * wait on a slow client. Everything in SQLite changes in one transaction (cache/removal).
 */
import { isDigest } from '../../registry/digest.ts';
import type { Logger } from '../../util/logger.ts';
import type { BlobCache } from '../blobs/blob-cache.ts';
import type { HotCache } from '../hot-cache.ts';
import type { Metadata } from '../metadata/metadata.ts';
import type { TagKey } from '../metadata/tag-queries.ts';
import { ContentRemover } from './removal.ts';

export interface ImageTarget {
  /** Upstream name (config `upstreams[].name`), as the cache keys tags. */
  readonly upstream: string;
  readonly repo: string;
  /** A tag, or a `sha256:` manifest digest. */
  readonly reference: string;
}

export interface ImageDeleteReport {
  /** Whether the reference named anything cached (a tag, or a cached manifest). */
  readonly found: boolean;
  readonly tagsRemoved: number;
  readonly manifestsRemoved: number;
  readonly blobsRemoved: number;
  readonly bytesFreed: number;
  /** Digests that would have gone but are pinned. */
  readonly pinned: string[];
}

export interface ImageDeleterOptions {
  metadata: Metadata;
  blobs: BlobCache;
  hot: HotCache;
  pinned?: () => ReadonlySet<string>;
  log: Logger;
}

export class ImageDeleter {
  readonly #metadata: Metadata;
  readonly #pinned: () => ReadonlySet<string>;
  readonly #log: Logger;
  readonly #remover: ContentRemover;

  constructor({ metadata, blobs, hot, pinned = () => new Set(), log }: ImageDeleterOptions) {
    this.#metadata = metadata;
    this.#pinned = pinned;
    this.#log = log.child({ module: 'image-delete' });
    this.#remover = new ContentRemover({ metadata, blobs, hot });
  }

  async deleteImage({ upstream, repo, reference }: ImageTarget): Promise<ImageDeleteReport> {
    const pinned = this.#pinned();
    const kept = new Set<string>();
    const { tags: tagRows, manifests: manifestRows } = this.#metadata;
    const result = this.#metadata.transaction(() => {
      let root: string | undefined;
      let tags: TagKey[];
      if (isDigest(reference)) {
        root = reference;
        tags = tagRows.pointingAt(upstream, repo, reference);
      } else {
        root = this.#metadata.getTag(upstream, repo, reference)?.digest;
        tags = root === undefined ? [] : [{ upstream, repo, tag: reference }];
      }
      const found = tags.length > 0 || (root !== undefined && manifestRows.has(root));
      if (root === undefined) return { found, untagged: undefined, removed: undefined };
      if (pinned.has(root)) {
        kept.add(root);
        return { found, untagged: undefined, removed: undefined };
      }
      const untagged = this.#remover.removeRows({ tags });
      const { manifests, blobs } = this.#unneeded(root, pinned, kept);
      return { found, untagged, removed: this.#remover.removeRows({ manifests, blobs }) };
    });
    const { found, untagged, removed } = result;
    if (removed !== undefined) await this.#remover.unlink(removed);
    const report: ImageDeleteReport = {
      found,
      tagsRemoved: (untagged?.tags.length ?? 0) + (removed?.tags.length ?? 0),
      manifestsRemoved: removed?.manifests.length ?? 0,
      blobsRemoved: removed?.blobs.length ?? 0,
      bytesFreed: removed?.bytes ?? 0,
      pinned: [...kept],
    };
    this.#log.info({ upstream, repo, reference, ...report }, 'image deleted');
    return report;
  }

  /**
   * The manifests under `root` that nothing remaining needs, and the blobs only they reference.
   * Runs with the image's tags already removed, inside the deletion's transaction.
   */
  #unneeded(root: string, pinned: ReadonlySet<string>, kept: Set<string>): { manifests: Set<string>; blobs: string[] } {
    const { manifests: manifestRows, tags: tagRows, refs } = this.#metadata;
    const manifests = new Set<string>();
    const blobCandidates = new Set<string>();
    // A manifest is looked at again each time one of its parents goes, so one shared by two
    // indexes being deleted goes once the second one does.
    const queue = [root];
    for (let d = queue.pop(); d !== undefined; d = queue.pop()) {
      if (manifests.has(d) || !manifestRows.has(d) || tagRows.isTagged(d) || this.#metadata.hosted.holds(d)) continue;
      const parents = refs.parents(d);
      if (parents.some((p) => p.kind !== 'subject' && !manifests.has(p.digest))) continue;
      if (pinned.has(d)) {
        kept.add(d);
        continue;
      }
      manifests.add(d);
      for (const c of refs.children(d)) {
        if (c.kind === 'manifest') queue.push(c.digest);
        else if (c.kind === 'blob') blobCandidates.add(c.digest);
      }
      for (const p of parents) if (p.kind === 'subject') queue.push(p.digest);
    }
    const blobs: string[] = [];
    for (const b of blobCandidates) {
      if (refs.parents(b).some((p) => !manifests.has(p.digest)) || this.#metadata.hosted.holds(b)) continue;
      if (pinned.has(b)) kept.add(b);
      else blobs.push(b);
    }
    return { manifests, blobs };
  }
}
