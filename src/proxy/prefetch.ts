/**
 * @module proxy/prefetch
 * Warms the cache for an image: resolves the reference, follows an index to the chosen
 * platforms, and makes sure every config and layer is cached, through the same single-flight
 * fills client pulls use (a client arriving mid-prefetch joins the stream instead of starting
 * another fetch). Used by the prefetch-on-pull and watch-list jobs and by `ocimirror prefetch`.
 */
import { RegistryError } from '../registry/errors.ts';
import { parseReference } from '../registry/reference.ts';
import { parseDigest } from '../registry/digest.ts';
import { DEFAULT_ACCEPT, parseAccept } from '../registry/media-types.ts';
import { matchesPlatform, readManifest, type Descriptor } from '../registry/manifest.ts';
import type { BlobProxy } from './blob-proxy.ts';
import type { ManifestProxy } from './manifest-proxy.ts';
import type { Route } from './router.ts';

export interface PrefetchProgress {
  /** The digest the reference resolved to. */
  digest: string;
  manifests: number;
  blobsTotal: number;
  blobsDone: number;
  bytesTotal: number;
  bytesDone: number;
  /** Blobs that were not cached and came from the upstream. */
  fetched: number;
}

export interface PrefetchOptions {
  /** Platforms of an index to follow ('linux/amd64'); [] = all. */
  platforms: readonly string[];
  signal?: AbortSignal;
  onProgress?: (p: PrefetchProgress) => void;
  /** Blobs fetched at once. */
  concurrency?: number;
  /** Revalidate a tag with the upstream even within its TTL (watch-list refresh). */
  revalidate?: boolean;
}

const ACCEPT_ALL = parseAccept(DEFAULT_ACCEPT);

export class Prefetcher {
  readonly #manifests: ManifestProxy;
  readonly #blobs: BlobProxy;

  constructor({ manifests, blobs }: { manifests: ManifestProxy; blobs: BlobProxy }) {
    this.#manifests = manifests;
    this.#blobs = blobs;
  }

  async image(route: Route, reference: string, { platforms, signal, onProgress, concurrency = 2, revalidate = false }: PrefetchOptions): Promise<PrefetchProgress> {
    const ref = parseReference(reference);
    let top;
    try {
      top = revalidate && ref.kind === 'tag' ? await this.#manifests.refresh(route, ref.tag) : await this.#manifests.get(route, ref, ACCEPT_ALL);
    } catch (err) {
      // The job fails at once on a 404 (jobs/job-runner) and its message is what `ocimirror prefetch` prints.
      if (err instanceof RegistryError && err.status === 404) {
        throw new RegistryError(err.code, { message: `${route.repo}${ref.kind === 'tag' ? ':' : '@'}${reference} not found on upstream ${route.upstream.name}: ${err.message}`, detail: err.detail, cause: err, upstreamStatus: err.upstreamStatus });
      }
      throw err;
    }
    const progress: PrefetchProgress = { digest: top.digest, manifests: 1, blobsTotal: 0, blobsDone: 0, bytesTotal: 0, bytesDone: 0, fetched: 0 };
    const blobs = new Map<string, Descriptor>();
    const queue = [top.bytes];
    while (queue.length > 0) {
      signal?.throwIfAborted();
      const content = readManifest(queue.shift() as Buffer);
      if (content.kind === 'index') {
        for (const child of content.manifests.filter((m) => matchesPlatform(m, platforms))) {
          const m = await this.#manifests.get(route, { kind: 'digest', digest: parseDigest(child.digest) }, ACCEPT_ALL);
          progress.manifests++;
          queue.push(m.bytes);
        }
      } else if (content.kind === 'image') {
        for (const d of content.config ? [content.config, ...content.layers] : content.layers) blobs.set(d.digest, d);
      }
    }
    progress.blobsTotal = blobs.size;
    progress.bytesTotal = [...blobs.values()].reduce((n, d) => n + d.size, 0);
    onProgress?.({ ...progress });
    const pending = [...blobs.values()];
    const worker = async () => {
      for (let d = pending.shift(); d; d = pending.shift()) {
        signal?.throwIfAborted();
        if ((await this.#blobs.prefetch(route, parseDigest(d.digest))) === 'fetched') progress.fetched++;
        progress.blobsDone++;
        progress.bytesDone += d.size;
        onProgress?.({ ...progress });
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
    return progress;
  }
}
