/**
 * @module proxy/known-holder
 * Whether the cache itself vouches that a repository holds a digest, with no upstream contact: a
 * link row for it, or a manifest cached for that repository that needs it (directly, or through an
 * index above it; a referrer does not count, it does not need its subject). While the upstream
 * cannot be asked, this is the only ground on which a digest cached for one repository is served
 * for another.
 */
import type { Metadata } from '../cache/metadata/metadata.ts';

export function knownToHold(metadata: Metadata, upstream: string, repo: string, digest: string): boolean {
  if (metadata.hasLink(upstream, repo, digest)) return true;
  for (const parent of metadata.refs.dependents(digest)) {
    if (metadata.hasLink(upstream, repo, parent)) return true;
  }
  return false;
}
