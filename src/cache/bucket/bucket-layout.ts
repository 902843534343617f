/**
 * @module cache/bucket/bucket-layout
 * Where content lives in the shared bucket. Keys are content-addressed, so every replica computes the
 * same key for the same bytes and an object, once committed, never changes:
 *
 *   <prefix>
 *   ├── blobs/sha256/<ab>/<hex>     blob bytes; <ab> = the first two hex digits (listing shards)
 *   ├── manifests/sha256/<hex>      manifest bytes exactly as received
 *   └── tmp/<uuid>                  staged objects of writers that copy into place; swept by abortStale
 *
 * Multipart uploads in progress are not objects: they become visible only when completed (see blob-bucket).
 */
import { RegistryError } from '../../registry/errors.ts';

const SHA256 = /^sha256:([0-9a-f]{64})$/;

export class BucketLayout {
  constructor(readonly prefix: string) {}

  /** The hex part of a sha256 digest; anything else is refused before it can name a key. */
  static hex(digest: string): string {
    const m = SHA256.exec(digest);
    if (!m?.[1]) throw new RegistryError('DIGEST_INVALID', { message: `expected a sha256 digest, got '${digest}'` });
    return m[1];
  }

  blobKey(digest: string): string {
    const hex = BucketLayout.hex(digest);
    return `${this.prefix}blobs/sha256/${hex.slice(0, 2)}/${hex}`;
  }

  manifestKey(digest: string): string {
    return `${this.prefix}manifests/sha256/${BucketLayout.hex(digest)}`;
  }

  tmpKey(id: string): string {
    return `${this.prefix}tmp/${id}`;
  }

  get blobsPrefix(): string {
    return `${this.prefix}blobs/sha256/`;
  }

  get tmpPrefix(): string {
    return `${this.prefix}tmp/`;
  }

  /** The digest a blob key names, or undefined for a key that is not one (stray objects are skipped, never guessed at). */
  digestOfBlobKey(key: string): string | undefined {
    if (!key.startsWith(this.blobsPrefix)) return undefined;
    const m = /^([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key.slice(this.blobsPrefix.length));
    return m?.[2] && m[2].startsWith(m[1] as string) ? `sha256:${m[2]}` : undefined;
  }
}
