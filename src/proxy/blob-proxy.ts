/**
 * @module proxy/blob-proxy
 * Blob policy. A committed blob the repository is known to hold is served from disk with no
 * upstream contact. A blob cached for another repository is confirmed with one upstream HEAD
 * first (while the upstream is down: served only to a repository known to hold it). A miss joins
 * (or starts) the single fill for that digest and streams as bytes arrive.
 * Range requests (RFC 9110 §14) are answered from the cache and from a fill in progress alike.
 * In a cluster, the fill reads from the blob's owner replica when that is another one (peerSource).
 */
import type { Digest } from '../registry/digest.ts';
import { parseRange } from '../registry/range.ts';
import type { BlobBody } from '../cache/blobs/blob-body.ts';
import type { BlobCache, FillSource } from '../cache/blobs/blob-cache.ts';
import type { HotCache } from '../cache/hot-cache.ts';
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

  constructor({ blobs, hot, peerSource }: { blobs: BlobCache; hot: HotCache; peerSource?: PeerSource | undefined }) {
    this.#blobs = blobs;
    this.#hot = hot;
    this.#peerSource = peerSource;
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
    if (req.method === 'HEAD') return this.#headUpstream(route, digest);
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
      open: async (signal) => (peer ? await peer(route, digest, signal) : undefined) ?? this.#openUpstream(route, digest, signal),
    });
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
