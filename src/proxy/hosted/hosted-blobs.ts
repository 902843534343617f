/**
 * @module proxy/hosted/hosted-blobs
 * Blobs of hosted repositories: upload sessions (cache/uploads) whose commit links the blob into
 * the repository and checks the registry's quota in the same transaction, cross-repository mounts,
 * and reads of what a repository holds. A blob stored for another repository or by the cache is
 * BLOB_UNKNOWN here until it is uploaded or mounted (OCI distribution-spec v1.1, "Pulling blobs":
 * access is gated by the repository name).
 */
import type { Readable } from 'node:stream';
import type { BlobCache } from '../../cache/blobs/blob-cache.ts';
import type { BlobBody } from '../../cache/blobs/blob-body.ts';
import type { UploadSession, UploadStore } from '../../cache/uploads/upload-store.ts';
import type { ChunkRange } from '../../registry/upload-range.ts';
import type { Digest } from '../../registry/digest.ts';
import { RegistryError } from '../../registry/errors.ts';
import { resolveRange, type BlobRequest, type BlobResult } from '../blob-proxy.ts';
import type { HostedRoute } from '../router.ts';
import type { HostedContent } from './hosted-repository.ts';

export interface BodyInfo {
  range?: ChunkRange | undefined;
  contentLength?: number | undefined;
}

export interface HostedBlobsOptions {
  uploads: UploadStore;
  content: HostedContent;
  blobs: Pick<BlobCache, 'openCommitted'>;
  /** A hosted registry's quota in bytes (0 = none). */
  maxSize: (registry: string) => number;
}

export class HostedBlobs {
  readonly #o: HostedBlobsOptions;

  constructor(opts: HostedBlobsOptions) {
    this.#o = opts;
  }

  start(route: HostedRoute): Promise<UploadSession> {
    return this.#o.uploads.create(route.registry, route.repo);
  }

  status(route: HostedRoute, id: string): UploadSession {
    return this.#o.uploads.get(id, route.registry, route.repo);
  }

  /** Appends a chunk; refused before any byte is written when its declared length would break the quota. */
  async append(route: HostedRoute, id: string, body: Readable, info: BodyInfo): Promise<number> {
    const session = this.#o.uploads.get(id, route.registry, route.repo);
    this.#room(route, session.size + (info.contentLength ?? 0));
    return this.#o.uploads.append(id, route.registry, route.repo, body, info);
  }

  /** Closes an upload: verifies the digest, commits the blob and links it to the repository. */
  async finish(route: HostedRoute, id: string, digest: string, body: Readable | undefined, info: BodyInfo): Promise<{ digest: string; size: number }> {
    const session = this.#o.uploads.get(id, route.registry, route.repo);
    this.#room(route, session.size + (info.contentLength ?? 0));
    const done = await this.#o.uploads.finish(id, route.registry, route.repo, digest, body, { ...info, onCommit: this.#link(route) });
    return { digest: done.digest, size: done.size };
  }

  /** A whole blob in one request (POST with `digest`). */
  async monolithic(route: HostedRoute, digest: string, body: Readable, info: BodyInfo): Promise<{ digest: string; size: number }> {
    this.#room(route, info.contentLength ?? 0);
    const done = await this.#o.uploads.putMonolithic(route.registry, route.repo, digest, body, { contentLength: info.contentLength, onCommit: this.#link(route) });
    return { digest: done.digest, size: done.size };
  }

  cancel(route: HostedRoute, id: string): Promise<void> {
    return this.#o.uploads.cancel(id, route.registry, route.repo);
  }

  /** Links `digest` from `fromRepo` of the same registry when the caller may read it; false = upload it instead. */
  mount(route: HostedRoute, digest: string, fromRepo: string, mayRead: (repo: string) => boolean): boolean {
    return this.#o.content.mount(route.registry, route.repo, digest, fromRepo, mayRead);
  }

  /** A blob the repository holds, whole or a range (RFC 9110 §14), from disk. */
  async get(route: HostedRoute, digest: Digest, req: BlobRequest): Promise<BlobResult> {
    // hasBlob's row is the blob store's own (linked and stored): no second lookup.
    const row = this.#o.content.hasBlob(route.registry, route.repo, digest.value);
    if (!row) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest: digest.value } });
    const range = resolveRange(req.range, row.size);
    let body: BlobBody | undefined;
    if (req.method === 'GET' && range !== 'unsatisfiable') {
      const opened = await this.#o.blobs.openCommitted(row, range?.start, range?.end);
      if (!opened) throw new RegistryError('BLOB_UNKNOWN', { message: 'blob unknown to registry: its file is gone', detail: { digest: digest.value } });
      body = opened.body;
    }
    return { digest: digest.value, size: row.size, cache: 'HIT', range, body };
  }

  #link(route: HostedRoute) {
    return (blob: { digest: string; size: number }) => {
      // Inside the blob row's transaction: a quota race between two uploads cannot overshoot.
      if (!this.#o.content.hasBlob(route.registry, route.repo, blob.digest)) this.#o.content.assertRoom(route.registry, this.#o.maxSize(route.registry), blob.size);
      this.#o.content.linkBlob(route.registry, route.repo, blob.digest);
    };
  }

  #room(route: HostedRoute, bytes: number): void {
    if (bytes > 0) this.#o.content.assertRoom(route.registry, this.#o.maxSize(route.registry), bytes);
  }
}
