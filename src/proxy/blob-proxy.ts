/**
 * @module proxy/blob-proxy
 * Blob policy. A committed blob the repository is known to hold is served from disk with no
 * upstream contact. A blob cached for another repository is confirmed with one upstream HEAD
 * first (while the upstream is down: served only to a repository known to hold it). A miss joins
 * (or starts) the single fill for that digest and streams as bytes arrive.
 * Range requests (RFC 9110 §14) are answered from the cache and from a fill in progress alike.
 * With a shared bucket (storage.backend s3) a miss reads the bucket first; in a cluster, the fill
 * then reads from the blob's owner replica when that is another one (peerSource), else the upstream.
 */
import type { Readable } from 'node:stream';
import type { Digest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { parseRange } from '../registry/range.ts';
import type { BlobBody } from '../cache/blobs/blob-body.ts';
import type { BlobCache, FillSource } from '../cache/blobs/blob-cache.ts';
import type { HotCache } from '../cache/hot-cache.ts';
import type { BucketTier } from '../cache/bucket/bucket-tier.ts';
import { discard } from '../util/read-body.ts';
import type { CacheStatus } from './manifest-proxy.ts';
import type { Route } from './router.ts';
import { knownToHold, linked, recordLink } from './known-holder.ts';
import { isUpstreamOutage, upstreamError } from './upstream-errors.ts';
import { waitAtMost } from './upstream-deadline.ts';

export interface BlobResult {
  readonly digest: string;
  /** Full size of the blob, when known (upstream may omit it on a HEAD miss). */
  readonly size: number | undefined;
  readonly cache: CacheStatus;
  /** 'unsatisfiable' → 416; a range → 206. */
  readonly range: { start: number; end: number } | 'unsatisfiable' | undefined;
  /** Absent for HEAD. */
  readonly body: BlobBody | undefined;
}

export interface BlobRequest {
  method: 'GET' | 'HEAD';
  range: string | undefined;
  /** Asked by another replica: a fill this starts opens the upstream, never a peer (no request loops). */
  fromPeer?: boolean;
}

/**
 * Where a fill's bytes come from when another replica owns the blob (cluster/peer-fill); undefined
 * means "open the upstream": this replica owns it, no cluster is configured, or the owner failed.
 */
export type PeerSource = (route: Route, digest: Digest, signal: AbortSignal) => Promise<FillSource | undefined>;

export class BlobProxy {
  readonly #blobs: BlobCache;
  readonly #hot: HotCache;
  readonly #peerSource: PeerSource | undefined;
  readonly #bucket: BucketTier | undefined;

  constructor({ blobs, hot, peerSource, bucket }: { blobs: BlobCache; hot: HotCache; peerSource?: PeerSource | undefined; bucket?: BucketTier | undefined }) {
    this.#blobs = blobs;
    this.#hot = hot;
    this.#peerSource = peerSource;
    this.#bucket = bucket;
  }

  async get(route: Route, digest: Digest, req: BlobRequest): Promise<BlobResult> {
    const row = this.#blobs.lookup(digest.value);
    if (row) {
      const cache = await this.#ensureLinked(route, digest);
      const range = resolveRange(req.range, row.size);
      if (req.method === 'HEAD' || range === 'unsatisfiable') {
        return { digest: digest.value, size: row.size, cache, range, body: undefined };
      }
      const opened = await this.#blobs.openCommitted(row, range?.start, range?.end);
      if (opened) return { digest: digest.value, size: row.size, cache, range, body: opened.body };
      // The file vanished under us: fall through to a fresh fill.
    }
    if (req.method === 'HEAD') {
      // In the shared bucket and vouched for this repository: answered with no upstream request.
      const size = this.#bucket?.sizeOf(digest.value);
      if (size !== undefined && knownToHold(this.#blobs.metadata, route.upstream.name, route.repo, digest.value)) {
        return { digest: digest.value, size, cache: 'HIT', range: undefined, body: undefined };
      }
      return this.#headUpstream(route, digest);
    }
    // The fill's answer is waited for at most `timeout`, however many hops and retries it takes;
    // a client that gives up leaves the fill running for the others and the cache.
    const fill = await waitAtMost(route.upstream, `blob ${digest.value}`, this.#startFill(route, digest, req.fromPeer === true));
    const size = fill.expectedSize;
    const range = size === undefined ? undefined : resolveRange(req.range, size);
    if (range === 'unsatisfiable') return { digest: digest.value, size, cache: 'MISS', range, body: undefined };
    return { digest: digest.value, size, cache: 'MISS', range, body: fill.createReader(range?.start, range?.end) };
  }

  /**
   * Makes sure a blob is cached, for prefetch: a no-op when it is (after the same repository
   * check as a client hit), else it starts or joins the single fill for the digest — a client
   * arriving meanwhile joins the same stream — and waits for the commit.
   */
  async prefetch(route: Route, digest: Digest): Promise<'cached' | 'fetched'> {
    if (this.#blobs.lookup(digest.value)) {
      await this.#ensureLinked(route, digest);
      return 'cached';
    }
    const fill = await this.#startFill(route, digest);
    if (!(await this.#blobs.outcome(fill))) {
      throw fill.error ?? new Error(`prefetch of ${digest.value} was not committed (disk full or shutting down)`);
    }
    return 'fetched';
  }

  #startFill(route: Route, digest: Digest, fromPeer = false) {
    const peer = fromPeer ? undefined : this.#peerSource;
    return this.#blobs.fill({
      digest,
      link: { upstream: route.upstream.name, repo: route.repo },
      source: route.upstream.name,
      timeoutMs: route.upstream.config.fillTimeout,
      open: async (signal) => {
        let bucketDown: unknown;
        const fromBucket = await this.#openBucket(route, digest, signal).catch((err: unknown) => {
          if (signal.aborted || !isUpstreamOutage(err)) throw err;
          bucketDown = err;
          return undefined;
        });
        if (fromBucket) return fromBucket;
        // With the bucket down, the owner may still hold the blob on its disk tier; nothing new is
        // fetched upstream into a cache the other replicas could not share (503 until it is back).
        const fromPeer = await this.#openPeer(peer, route, digest, signal);
        if (fromPeer) return fromPeer;
        if (bucketDown !== undefined) throw bucketDown;
        return this.#openUpstream(route, digest, signal);
      },
    });
  }

  /**
   * The blob from its owner replica. The owner may die mid-stream: the fill then continues with the
   * rest from the upstream (a Range request), so the clients' streams go on and every byte is still
   * hashed: an owner's death costs the rest of one blob fetched twice, never a failed pull.
   */
  async #openPeer(peer: PeerSource | undefined, route: Route, digest: Digest, signal: AbortSignal): Promise<FillSource | undefined> {
    const source = peer ? await peer(route, digest, signal) : undefined;
    if (!source) return undefined;
    return { ...source, resume: (offset) => this.#openUpstreamFrom(route, digest, offset, signal) };
  }

  /** Bytes `offset`… of the blob from the upstream (RFC 9110 §14.2); anything but that exact range fails the fill. */
  async #openUpstreamFrom(route: Route, digest: Digest, offset: number, signal: AbortSignal): Promise<Readable> {
    const res = await route.upstream.request({
      method: 'GET',
      repository: route.repo,
      path: `${route.repo}/blobs/${digest.value}`,
      headers: { range: `bytes=${offset}-` },
      signal,
    });
    const start = /^bytes (\d+)-/.exec(res.headers['content-range'] ?? '')?.[1];
    if (res.status !== 206 || Number(start) !== offset) {
      discard(res.body);
      if (res.status !== 206 && res.status !== 200) {
        throw upstreamError(res, { upstream: route.upstream.name, repo: route.repo, notFound: 'BLOB_UNKNOWN', subject: digest.value });
      }
      throw new RegistryError('BAD_GATEWAY', { message: `upstream ${route.upstream.name} did not answer bytes ${offset}- of ${digest.value} with that range (HTTP ${res.status})` });
    }
    return res.body;
  }

  /**
   * The blob from the shared bucket, once this repository is known to hold it: the bucket holds
   * digests, not repositories. A manifest cached for the repository that needs the blob vouches
   * for it (a pull asks for the manifest first, so a pull costs no extra request); otherwise it is
   * confirmed as a cache hit for another repository would be (one upstream HEAD).
   */
  async #openBucket(route: Route, digest: Digest, signal: AbortSignal): Promise<FillSource | undefined> {
    const source = await this.#bucket?.source(digest.value, signal);
    if (!source) return undefined;
    try {
      if (!knownToHold(this.#blobs.metadata, route.upstream.name, route.repo, digest.value)) await this.#ensureLinked(route, digest);
    } catch (err) {
      source.body.destroy();
      throw err;
    }
    return source;
  }

  /**
   * A cached blob first asked for through another repository is confirmed upstream with a HEAD
   * (no bytes move) so the cache never answers for a repository the upstream would refuse. While
   * the upstream is down it is served STALE only to a repository known to hold it (proxy/known-holder).
   */
  async #ensureLinked(route: Route, digest: Digest): Promise<CacheStatus> {
    const name = route.upstream.name;
    const metadata = this.#blobs.metadata;
    if (linked(this.#hot, metadata, name, route.repo, digest.value)) return 'HIT';
    try {
      const res = await route.upstream.request({ method: 'HEAD', repository: route.repo, path: `${route.repo}/blobs/${digest.value}` });
      discard(res.body);
      if (res.status !== 200) {
        throw upstreamError(res, { upstream: name, repo: route.repo, notFound: 'BLOB_UNKNOWN', subject: digest.value });
      }
    } catch (err) {
      // Unconfirmed, it is served only if the cache itself vouches for this repository; otherwise
      // the client gets the outage error an uncached blob would get, and may retry.
      if (isUpstreamOutage(err) && knownToHold(metadata, name, route.repo, digest.value)) return 'STALE';
      throw err;
    }
    recordLink(this.#hot, metadata, 'blob link', name, route.repo, digest.value);
    return 'HIT';
  }

  async #headUpstream(route: Route, digest: Digest): Promise<BlobResult> {
    const res = await route.upstream.request({ method: 'HEAD', repository: route.repo, path: `${route.repo}/blobs/${digest.value}` });
    discard(res.body);
    if (res.status !== 200) {
      throw upstreamError(res, { upstream: route.upstream.name, repo: route.repo, notFound: 'BLOB_UNKNOWN', subject: digest.value });
    }
    const length = Number(res.headers['content-length']);
    return { digest: digest.value, size: Number.isSafeInteger(length) ? length : undefined, cache: 'MISS', range: undefined, body: undefined };
  }

  async #openUpstream(route: Route, digest: Digest, signal: AbortSignal): Promise<FillSource> {
    const res = await route.upstream.request({
      method: 'GET',
      repository: route.repo,
      path: `${route.repo}/blobs/${digest.value}`,
      signal,
      // The fill writes the chunks and hands them back through `release` (cache/blobs/blob-fill).
      bulk: true,
    });
    if (res.status !== 200) {
      discard(res.body);
      throw upstreamError(res, { upstream: route.upstream.name, repo: route.repo, notFound: 'BLOB_UNKNOWN', subject: digest.value });
    }
    const length = Number(res.headers['content-length']);
    return {
      size: Number.isSafeInteger(length) && length >= 0 ? length : undefined,
      mediaType: res.headers['content-type'],
      body: res.body,
      release: res.release,
    };
  }
}

export function resolveRange(header: string | undefined, size: number): BlobResult['range'] {
  const r = parseRange(header, size);
  if (r.kind === 'none') return undefined;
  if (r.kind === 'unsatisfiable') return 'unsatisfiable';
  return { start: r.start, end: r.end };
}
