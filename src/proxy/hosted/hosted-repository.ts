/**
 * @module proxy/hosted/hosted-repository
 * Hosted repositories: content clients push (OCI distribution-spec v1.1 push, content discovery
 * and content management), for a registry and repository the caller has already resolved and
 * authorised. Bytes live where cached content does (the blob store, the `manifests` table); a
 * repository sees only what is linked into it (metadata/hosted-queries), so a blob another
 * repository pushed, or the cache pulled, is BLOB_UNKNOWN here until it is uploaded or mounted.
 *
 * Manifests are checked before they are stored (proxy/hosted/pushed-manifest), and what they
 * reference must be linked in the same repository: config and layers as blobs, index entries as
 * manifests, else MANIFEST_BLOB_UNKNOWN ("a registry MAY reject a manifest … with descriptors …
 * that reference a manifest or blob that does not exist"). A `subject` need not exist ("MUST
 * initially accept"), so referrers can be pushed before what they are about. Deleting unlinks:
 * the bytes stay until nothing links them, then eviction and gc treat them as cached content.
 *
 * Everything here is synchronous SQLite work on the one metadata connection, so a check and the
 * write that follows it cannot interleave with another request.
 */
import { createHash } from 'node:crypto';
import type { BlobCache } from '../../cache/blobs/blob-cache.ts';
import type { HostedRegistryStats } from '../../cache/metadata/hosted-queries.ts';
import type { Metadata } from '../../cache/metadata/metadata.ts';
import { isDigest, isDigestShaped, parseDigest } from '../../registry/digest.ts';
import { RegistryError } from '../../registry/errors.ts';
import { readManifest } from '../../registry/manifest.ts';
import { isValidTag, parseReference } from '../../registry/reference.ts';
import type { Logger } from '../../util/logger.ts';
import { readPushedManifest, type PushedDescriptor, type PushedManifest } from './pushed-manifest.ts';
import { referrerDescriptor, referrersIndex, type ReferrersIndex } from '../../registry/referrers-index.ts';

export interface HostedContentOptions {
  metadata: Metadata;
  /** The blob store's rows, for existence and sizes. */
  blobs: Pick<BlobCache, 'lookup'>;
  log: Logger;
  now?: () => number;
  /** A hosted registry's quota in bytes (0 = none), checked before a manifest is stored. */
  maxSize?: (registry: string) => number;
}

export interface PushedManifestResult {
  readonly digest: string;
  readonly mediaType: string;
  /** The `subject` digest, for the `OCI-Subject` response header. */
  readonly subject?: string;
}

export interface HostedManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly bytes: Buffer;
}

export interface HostedManifestHead {
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
}

export interface HostedBlob {
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string | null;
}

export interface HostedDeletion {
  readonly digest: string;
  /** Tags removed with it (by digest: every tag of the repository pointing at it). */
  readonly tags: string[];
}

export interface TagPage {
  /** The repository name, for the `name` field of the answer. */
  readonly name: string;
  readonly tags: string[];
  /** More tags follow the last one: the HTTP layer sends `Link: <…?n=…&last=…>; rel="next"`. */
  readonly more: boolean;
}

export interface ReferrersAnswer {
  readonly index: ReferrersIndex;
  /** The index as sent, Content-Type `application/vnd.oci.image.index.v1+json`. */
  readonly body: Buffer;
  /** Filters applied, for `OCI-Filters-Applied` (empty: do not send the header). */
  readonly filtersApplied: readonly string[];
}

/** What {@link HostedContent.adopt} linked. */
export interface AdoptedManifest {
  readonly digest: string;
  readonly mediaType: string;
  /** Manifests and blobs of the graph (linked now or already). */
  readonly manifests: number;
  readonly blobs: number;
  /** Links that were not there before. */
  readonly newLinks: number;
  /** Whether the tag was created or moved. */
  readonly tagMoved: boolean;
  /** Bytes the registry's usage grew by (digests no repository of it linked before). */
  readonly addedBytes: number;
}

/** `n` is capped like list-proxy's: nine digits. */
const N_PATTERN = /^\d{1,9}$/;

export class HostedContent {
  readonly #metadata: Metadata;
  readonly #blobs: Pick<BlobCache, 'lookup'>;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #maxSize: (registry: string) => number;

  constructor({ metadata, blobs, log, now = Date.now, maxSize = () => 0 }: HostedContentOptions) {
    this.#metadata = metadata;
    this.#blobs = blobs;
    this.#log = log.child({ module: 'hosted' });
    this.#now = now;
    this.#maxSize = maxSize;
  }

  /**
   * Stores a pushed manifest under a tag (moving the tag if it pointed elsewhere) or a digest,
   * after the checks in the module comment. The reference by digest must be the sha256 of the
   * bytes (DIGEST_INVALID); a reference that is neither a tag nor a digest is TAG_INVALID.
   */
  putManifest(registry: string, repo: string, reference: string, contentType: string | undefined, bytes: Buffer): PushedManifestResult {
    const ref = pushReference(reference);
    const manifest = readPushedManifest(contentType, bytes);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (ref.kind === 'digest' && ref.digest !== digest) {
      throw new RegistryError('DIGEST_INVALID', { message: `the manifest's digest is ${digest}, not ${ref.digest}`, detail: { digest: ref.digest, actual: digest } });
    }
    this.#checkReferences(registry, repo, manifest);
    const hosted = this.#metadata.hosted;
    if (hosted.link(registry, repo, digest) === undefined) this.assertRoom(registry, this.#maxSize(registry), bytes.length);
    this.#metadata.putHostedManifest({ digest, mediaType: manifest.mediaType, bytes }, { registry, repo, tag: ref.kind === 'tag' ? ref.tag : undefined });
    this.#log.info({ registry, repo, reference, digest, mediaType: manifest.mediaType, size: bytes.length }, 'manifest pushed');
    return { digest, mediaType: manifest.mediaType, ...(manifest.subject ? { subject: manifest.subject.digest } : {}) };
  }

  /** A manifest by tag or digest, as pushed; MANIFEST_UNKNOWN when the repository has none. */
  getManifest(registry: string, repo: string, reference: string): HostedManifest {
    const digest = this.#resolve(registry, repo, reference);
    const row = digest === undefined ? undefined : this.#metadata.getManifest(digest);
    if (row === undefined) throw manifestUnknown(registry, repo, reference);
    return { digest: row.digest, mediaType: row.mediaType, bytes: row.bytes };
  }

  /** What a HEAD answers: digest, media type and size. */
  headManifest(registry: string, repo: string, reference: string): HostedManifestHead {
    const { digest, mediaType, bytes } = this.getManifest(registry, repo, reference);
    return { digest, mediaType, size: bytes.length };
  }

  /** Links a committed blob (an upload that just finished) into the repository; BLOB_UNKNOWN when it is not stored. */
  linkBlob(registry: string, repo: string, digest: string): HostedBlob {
    const value = parseDigest(digest).value;
    const row = this.#blobs.lookup(value);
    if (row === undefined) throw new RegistryError('BLOB_UNKNOWN', { message: `blob ${value} is not stored`, detail: { digest: value } });
    this.#metadata.hosted.putLink(registry, repo, value, 'blob', this.#now());
    return row;
  }

  /** The blob when it is stored and linked into the repository, else undefined (BLOB_UNKNOWN there). */
  hasBlob(registry: string, repo: string, digest: string): HostedBlob | undefined {
    const value = parseDigest(digest).value;
    if (this.#metadata.hosted.link(registry, repo, value) === undefined) return undefined;
    return this.#blobs.lookup(value);
  }

  /**
   * Cross-repository mount within one registry: true once the blob, stored and linked in
   * `fromRepo`, which the caller may read, is linked here too. False otherwise; the HTTP layer
   * then opens an ordinary upload session (202), as the spec says a registry that cannot mount should.
   */
  mount(registry: string, repo: string, digest: string, fromRepo: string, mayRead: (repo: string) => boolean): boolean {
    if (!isDigest(digest) || fromRepo === repo) return false;
    const value = digest;
    if (this.hasBlob(registry, fromRepo, value) === undefined || !mayRead(fromRepo)) return false;
    this.#metadata.hosted.putLink(registry, repo, value, 'blob', this.#now());
    this.#log.info({ registry, repo, digest: value, from: fromRepo }, 'blob mounted');
    return true;
  }

  /**
   * By digest: unlinks the manifest and removes every tag of the repository pointing at it. By
   * tag: removes the tag only (the manifest stays pullable by digest). MANIFEST_UNKNOWN when absent.
   */
  deleteManifest(registry: string, repo: string, reference: string): HostedDeletion {
    const ref = parseReference(reference);
    const hosted = this.#metadata.hosted;
    const deletion = this.#metadata.transaction((): HostedDeletion | undefined => {
      if (ref.kind === 'tag') {
        const row = hosted.tag(registry, repo, ref.tag);
        if (row === undefined || !hosted.deleteTag(registry, repo, ref.tag)) return undefined;
        return { digest: row.digest, tags: [ref.tag] };
      }
      const digest = ref.digest.value;
      if (!hosted.deleteLink(registry, repo, digest, 'manifest')) return undefined;
      return { digest, tags: hosted.deleteTagsTo(registry, repo, digest) };
    });
    if (deletion === undefined) throw manifestUnknown(registry, repo, reference);
    this.#log.info({ registry, repo, reference, ...deletion }, 'manifest deleted');
    return deletion;
  }

  /** Unlinks a blob from the repository; BLOB_UNKNOWN when it was not linked there. */
  deleteBlob(registry: string, repo: string, digest: string): void {
    const value = parseDigest(digest).value;
    if (!this.#metadata.hosted.deleteLink(registry, repo, value, 'blob')) {
      throw new RegistryError('BLOB_UNKNOWN', { message: `blob ${value} is not in ${registry}/${repo}`, detail: { digest: value } });
    }
    this.#log.info({ registry, repo, digest: value }, 'blob deleted');
  }

  /**
   * A page of the repository's tags in binary order, after `last`, at most `n`
   * (distribution-spec "Listing Tags"; `n` = 0 gives none and no next page). NAME_UNKNOWN for a
   * repository with nothing in it; PAGINATION_NUMBER_INVALID for an `n` that is not a count.
   */
  tags(registry: string, repo: string, { n, last }: { n?: string | number | undefined; last?: string | undefined } = {}): TagPage {
    let limit = Number.MAX_SAFE_INTEGER;
    if (n !== undefined) {
      if (!N_PATTERN.test(String(n))) throw new RegistryError('PAGINATION_NUMBER_INVALID', { message: 'n must be a non-negative integer' });
      limit = Number(n);
    }
    if (last !== undefined && !isValidTag(last)) throw new RegistryError('TAG_INVALID', { message: 'last must be a tag' });
    if (!this.#metadata.hosted.hasRepository(registry, repo)) {
      throw new RegistryError('NAME_UNKNOWN', { message: `repository ${registry}/${repo} is not known`, detail: { name: repo } });
    }
    if (limit === 0) return { name: repo, tags: [], more: false };
    const page = this.#metadata.hosted.tagPage(registry, repo, last ?? '', limit === Number.MAX_SAFE_INTEGER ? limit : limit + 1);
    const more = page.length > limit;
    return { name: repo, tags: more ? page.slice(0, limit) : page, more };
  }

  /**
   * The referrers of `digest` in the repository (distribution-spec "Listing Referrers"), an empty
   * index when there are none, whether or not the subject itself is stored. With `artifactType`,
   * only those of that type, and the filter is reported as applied.
   */
  referrers(registry: string, repo: string, digest: string, artifactType?: string): ReferrersAnswer {
    const subject = parseDigest(digest).value;
    const filter = artifactType === undefined || artifactType === '' ? undefined : artifactType;
    const manifests = this.#metadata.hosted
      .referrers(registry, repo, subject)
      .map(referrerDescriptor)
      .filter((d) => d !== undefined)
      .filter((d) => filter === undefined || d.artifactType === filter);
    const index = referrersIndex(manifests);
    return { index, body: Buffer.from(JSON.stringify(index)), filtersApplied: filter === undefined ? [] : ['artifactType'] };
  }

  /** Bytes the registry holds: the distinct blobs and manifests linked in any of its repositories. */
  usedBytes(registry: string): number {
    return this.#metadata.hosted.usedBytes(registry);
  }

  /**
   * Throws QUOTA_EXCEEDED (507, DENIED on the wire) when `addBytes` more would take the registry
   * over `maxSize` (0 = no quota). The upload side calls it before it accepts a blob's bytes.
   */
  assertRoom(registry: string, maxSize: number, addBytes: number): void {
    if (!(maxSize > 0)) return;
    const used = this.usedBytes(registry);
    if (used + addBytes <= maxSize) return;
    throw new RegistryError('QUOTA_EXCEEDED', {
      message: `hosted registry ${registry} is over its quota: ${used} bytes used, ${addBytes} more asked, maxSize ${maxSize}`,
      detail: { registry, used, requested: addBytes, maxSize },
    });
  }

  /** Repositories of the registry holding anything, in binary order (catalog, console). */
  repositories(registry: string): string[] {
    return this.#metadata.hosted.repositories(registry);
  }

  /** Per-registry counts and bytes. */
  stats(): HostedRegistryStats[] {
    return this.#metadata.hosted.stats();
  }

  /**
   * Links a manifest the store already holds into a repository as if it had been pushed, for
   * `ocimirror sync --dest <hosted>`: the cache fetched and verified the bytes once, and this makes
   * them hosted. Everything it needs is linked with it — an index's entries that are stored
   * (recursively; entries never copied, such as platforms left out, stay unlinked), every config
   * and layer (BLOB_UNKNOWN when one is not stored) — then `tag` is pointed at it, all in one
   * transaction that the quota check rolls back. A referrer's `subject` is not followed.
   */
  adopt(registry: string, repo: string, tag: string | undefined, digest: string): AdoptedManifest {
    if (tag !== undefined && !isValidTag(tag)) throw new RegistryError('TAG_INVALID', { message: 'invalid tag', detail: { tag: tag.slice(0, 200) } });
    const top = parseDigest(digest).value;
    const hosted = this.#metadata.hosted;
    return this.#metadata.transaction((): AdoptedManifest => {
      const root = this.#metadata.getManifest(top);
      if (root === undefined) throw new RegistryError('MANIFEST_UNKNOWN', { message: `manifest ${top} is not stored`, detail: { digest: top } });
      const usedBefore = hosted.usedBytes(registry);
      const now = this.#now();
      const counts = { manifests: 0, blobs: 0, newLinks: 0 };
      const link = (value: string, kind: 'blob' | 'manifest') => {
        if (hosted.link(registry, repo, value) !== kind) counts.newLinks++;
        hosted.putLink(registry, repo, value, kind, now);
        counts[kind === 'blob' ? 'blobs' : 'manifests']++;
      };
      const seen = new Set<string>();
      const queue = [root];
      for (let row = queue.shift(); row !== undefined; row = queue.shift()) {
        if (seen.has(row.digest)) continue;
        seen.add(row.digest);
        link(row.digest, 'manifest');
        const content = readManifest(row.bytes);
        if (content.kind === 'index') {
          for (const child of content.manifests) {
            const stored = this.#metadata.getManifest(child.digest);
            if (stored !== undefined) queue.push(stored);
          }
        } else if (content.kind === 'image') {
          for (const d of content.config ? [content.config, ...content.layers] : content.layers) {
            if (seen.has(d.digest)) continue;
            seen.add(d.digest);
            if (this.#blobs.lookup(d.digest) === undefined) {
              throw new RegistryError('BLOB_UNKNOWN', { message: `blob ${d.digest} of manifest ${row.digest} is not stored`, detail: { digest: d.digest } });
            }
            link(d.digest, 'blob');
          }
        }
      }
      const addedBytes = hosted.usedBytes(registry) - usedBefore;
      const maxSize = this.#maxSize(registry);
      if (maxSize > 0 && addedBytes > 0 && usedBefore + addedBytes > maxSize) {
        throw new RegistryError('QUOTA_EXCEEDED', {
          message: `hosted registry ${registry} is over its quota: ${usedBefore} bytes used, ${addedBytes} more asked, maxSize ${maxSize}`,
          detail: { registry, used: usedBefore, requested: addedBytes, maxSize },
        });
      }
      let tagMoved = false;
      if (tag !== undefined) {
        tagMoved = hosted.tag(registry, repo, tag)?.digest !== top;
        if (tagMoved) hosted.putTag(registry, repo, tag, { digest: top, mediaType: root.mediaType, pushedAt: now });
      }
      return { digest: top, mediaType: root.mediaType, ...counts, tagMoved, addedBytes };
    });
  }

  /** The manifest digest a reference names in the repository, if any. */
  #resolve(registry: string, repo: string, reference: string): string | undefined {
    const ref = parseReference(reference);
    const hosted = this.#metadata.hosted;
    if (ref.kind === 'tag') return hosted.tag(registry, repo, ref.tag)?.digest;
    return hosted.link(registry, repo, ref.digest.value) === 'manifest' ? ref.digest.value : undefined;
  }

  /** Config and layers must be blobs linked here, index entries manifests linked here; the subject may be anything. */
  #checkReferences(registry: string, repo: string, manifest: PushedManifest): void {
    const hosted = this.#metadata.hosted;
    const blobs = manifest.config ? [manifest.config, ...manifest.layers] : manifest.layers;
    for (const d of blobs) {
      if (d.external) continue;
      const row = hosted.link(registry, repo, d.digest) === undefined ? undefined : this.#blobs.lookup(d.digest);
      if (row === undefined) throw blobUnknown(registry, repo, 'blob', d);
      if (row.size !== d.size) throw sizeMismatch(d, row.size);
    }
    for (const d of manifest.manifests) {
      const row = hosted.link(registry, repo, d.digest) === 'manifest' ? this.#metadata.getManifest(d.digest) : undefined;
      if (row === undefined) throw blobUnknown(registry, repo, 'manifest', d);
      if (row.bytes.length !== d.size) throw sizeMismatch(d, row.bytes.length);
    }
  }
}

/** A PUT's reference: a tag, else a sha256 digest (DIGEST_INVALID for another algorithm), else TAG_INVALID. */
function pushReference(reference: string): { kind: 'tag'; tag: string } | { kind: 'digest'; digest: string } {
  if (isValidTag(reference)) return { kind: 'tag', tag: reference };
  if (isDigestShaped(reference)) return { kind: 'digest', digest: parseDigest(reference).value };
  throw new RegistryError('TAG_INVALID', { message: 'the reference is neither a tag nor a digest', detail: { reference: reference.slice(0, 200) } });
}

function manifestUnknown(registry: string, repo: string, reference: string): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', { message: `manifest ${reference} is not in ${registry}/${repo}`, detail: { name: repo, reference } });
}

function blobUnknown(registry: string, repo: string, what: 'blob' | 'manifest', d: PushedDescriptor): RegistryError {
  return new RegistryError('MANIFEST_BLOB_UNKNOWN', { message: `the manifest references ${what} ${d.digest}, which is not in ${registry}/${repo}`, detail: { digest: d.digest } });
}

function sizeMismatch(d: PushedDescriptor, actual: number): RegistryError {
  return new RegistryError('MANIFEST_INVALID', { message: `the descriptor of ${d.digest} gives ${d.size} bytes; the content has ${actual}`, detail: { digest: d.digest, size: d.size, actual } });
}
