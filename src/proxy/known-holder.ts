/**
 * @module proxy/known-holder
 * Whether the cache itself vouches that a repository holds a digest, with no upstream contact: a
 * link row for it, or a manifest cached for that repository that needs it (directly, or through an
 * index above it; a referrer does not count, it does not need its subject). While the upstream
 * cannot be asked, this is the only ground on which a digest cached for one repository is served
 * for another. The link itself is what a cache hit checks, in memory first, for manifests and
 * blobs alike.
 */
import type { HotCache } from '../cache/hot-cache.ts';
import type { Metadata } from '../cache/metadata/metadata.ts';

/** Whether a link row says `repo` holds `digest`: the hot cache first, then the database (a row found is kept hot). */
export function linked(hot: HotCache, metadata: Metadata, upstream: string, repo: string, digest: string): boolean {
  if (hot.hasLink(upstream, repo, digest)) return true;
  if (!metadata.hasLink(upstream, repo, digest)) return false;
  hot.setLink(upstream, repo, digest);
  return true;
}

/** Records that the upstream confirmed `repo` holds `digest`; on a full disk neither the row nor the hot entry is kept (the answer is the same). */
export function recordLink(hot: HotCache, metadata: Metadata, what: string, upstream: string, repo: string, digest: string): void {
  if (metadata.tryWrite(what, () => metadata.putLink(upstream, repo, digest))) hot.setLink(upstream, repo, digest);
}

export function knownToHold(metadata: Metadata, upstream: string, repo: string, digest: string): boolean {
  if (metadata.hasLink(upstream, repo, digest)) return true;
  for (const parent of metadata.refs.dependents(digest)) {
    if (metadata.hasLink(upstream, repo, parent)) return true;
  }
  return false;
}
