/**
 * @module proxy/manifest-proxy
 * Manifest policy. By digest: immutable, served from the cache with no upstream contact once the
 * repository is known to hold it. By tag: fresh for the upstream's tagTTL; after that revalidated
 * with a HEAD (Docker Hub counts GETs against its rate limit, not HEADs) and refetched only if
 * the digest moved; served stale (X-Cache: STALE) while the upstream is down or erroring.
 *
 * Tags are always resolved upstream with the full Accept list (OCI/Docker index and manifest),
 * so the cached tag → digest mapping is the one a modern client sees whoever asked first; a
 * client that cannot take that type gets a pass-through fetch with its own Accept.
 *
 * Each upstream exchange, body included, is bounded by the upstream's `timeout`, and so is each
 * client's wait for a fetch it shares with others: a client gives up (503, or STALE when the tag
 * or digest is cached) while the fetch goes on for the others and for the cache.
 *
 * In a cluster, a tag another replica owns is resolved by asking that owner (peerTags) rather
 * than the upstream, so one replica's TTL governs the upstream traffic for it cluster-wide; a
 * request from a peer never goes on to another one, and an owner that fails leaves it to the upstream.
 * With a shared bucket (storage.backend s3), manifests from the upstream are kept there too, and a
 * manifest by digest that an index cached for the repository needs is read from it first.
 */
import { createHash } from 'node:crypto';
import { RegistryError } from '../registry/errors.ts';
import { parseDigest, type Digest } from '../registry/digest.ts';
import type { Reference } from '../registry/reference.ts';
import { DEFAULT_ACCEPT, acceptsMediaType, declaredMediaType } from '../registry/media-types.ts';
import type { Metadata } from '../cache/metadata/metadata.ts';
import type { BucketTier } from '../cache/bucket/bucket-tier.ts';
import type { HotCache, HotManifest, HotTag } from '../cache/hot-cache.ts';
import { SingleFlight } from '../util/single-flight.ts';
import { BodyTooLargeError, discard, readBody } from '../util/read-body.ts';
import type { Logger } from '../util/logger.ts';
import type { Route } from './router.ts';
import { knownToHold, linked, recordLink } from './known-holder.ts';
import { isUpstreamOutage, upstreamError } from './upstream-errors.ts';
import { waitAtMost, withinTimeout } from './upstream-deadline.ts';

export type CacheStatus = 'HIT' | 'MISS' | 'STALE';

export interface ManifestResult extends HotManifest {
  readonly cache: CacheStatus;
}

/**
 * After a failed revalidation, the longest a tag is served STALE before the upstream is asked again
 * (never longer than the tag's own TTL). Without it every request for an expired tag would send
 * its own doomed HEAD to an upstream that is down, and log a warning for it.
 */
export const STALE_RETRY_MS = 10_000;

/** The spec asks registries to accept manifests of at least 4 MiB; refuse anything past twice that. */
export const MANIFEST_MAX_BYTES = 8 << 20;

/**
 * Where a tag is resolved when another replica owns it (cluster/peer-tags): the owner's manifest,
 * verified against its digest; 'unknown' when the owner found no such tag; undefined for "ask the
 * upstream" (this replica owns it, or the owner failed). Never throws.
 */
export type PeerTagSource = (route: Route, tag: string) => Promise<HotManifest | 'unknown' | undefined>;

export interface ManifestProxyOptions {
  metadata: Metadata;
  hot: HotCache;
  log: Logger;
  now?: () => number;
  /** Undefined on a single node: every tag is resolved against the upstream. */
  peerTags?: PeerTagSource | undefined;
  /** With storage.backend s3: manifests by digest are kept in and read from the shared bucket. */
  bucket?: BucketTier | undefined;
}

export interface ManifestRequest {
  /** Asked by another replica: a tag this resolves goes to the upstream, never to a peer (no request loops). */
  fromPeer?: boolean;
}

export class ManifestProxy {
  readonly #metadata: Metadata;
  readonly #hot: HotCache;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #flights = new SingleFlight<ManifestResult>();
  readonly #peerTags: PeerTagSource | undefined;
  readonly #bucket: BucketTier | undefined;

  constructor({ metadata, hot, log, now = Date.now, peerTags, bucket }: ManifestProxyOptions) {
    this.#peerTags = peerTags;
    this.#bucket = bucket;
    this.#metadata = metadata;
    this.#hot = hot;
    this.#log = log.child({ module: 'manifest-proxy' });
    this.#now = now;
  }

  async get(route: Route, ref: Reference, accept: readonly string[], req: ManifestRequest = {}): Promise<ManifestResult> {
    const local = this.#local(route, ref, accept);
    if ('hit' in local) return local.hit;
    return ref.kind === 'digest'
      ? this.#byDigest(route, ref.digest, local.cached)
      : this.#byTag(route, ref.tag, accept, local.known, local.cached, req.fromPeer !== true);
  }

  /**
   * The answer when it needs nothing but memory and the database — a digest this repository is
   * known to hold, or a tag within its TTL — synchronously; undefined when the upstream may have
   * to be asked (then {@link get} takes it from the start).
   */
  hit(route: Route, ref: Reference, accept: readonly string[]): ManifestResult | undefined {
    const local = this.#local(route, ref, accept);
    return 'hit' in local ? local.hit : undefined;
  }

  /**
   * What memory and the database say about `ref`: the answer when that is enough, else what they
   * know, which the upstream path starts from instead of looking it up again.
   */
  #local(route: Route, ref: Reference, accept: readonly string[]): { hit: ManifestResult } | { known: HotTag | undefined; cached: HotManifest | undefined } {
    if (ref.kind === 'digest') {
      const cached = this.cached(ref.digest.value);
      if (cached && linked(this.#hot, this.#metadata, route.upstream.name, route.repo, ref.digest.value)) return { hit: this.#hitOf(cached) };
      return { known: undefined, cached };
    }
    const known = this.#knownTag(route, ref.tag);
    const cached = known ? this.cached(known.digest) : undefined;
    // Tags of an offline upstream never expire: there is nothing to revalidate them against.
    if (known && cached && acceptsMediaType(accept, cached.mediaType) && (this.#now() - known.fetchedAt < route.upstream.config.tagTTL || route.upstream.config.offline)) {
      return { hit: this.#hitOf(cached) };
    }
    return { known, cached };
  }

  #hitOf(cached: HotManifest): ManifestResult {
    this.#metadata.recordManifestHit(cached.digest);
    return { ...cached, cache: 'HIT' };
  }

  /** The tag's cached mapping (hot cache, else the database, then kept hot). */
  #knownTag(route: Route, tag: string): HotTag | undefined {
    const name = route.upstream.name;
    const hot = this.#hot.getTag(name, route.repo, tag);
    if (hot) return hot;
    const row = this.#metadata.getTag(name, route.repo, tag);
    if (!row) return undefined;
    const known = { digest: row.digest, mediaType: row.mediaType, fetchedAt: row.fetchedAt };
    this.#hot.setTag(name, route.repo, tag, known);
    return known;
  }

  /**
   * Resolves a tag against the upstream now, whatever its TTL (watch-list refresh): a HEAD when
   * it is cached (refetching only if it moved), a GET when it is not. Never through the tag's
   * owner, whose answer within its own TTL would not be "now".
   */
  async refresh(route: Route, tag: string): Promise<ManifestResult> {
    const known = this.#knownTag(route, tag);
    const cached = known ? this.cached(known.digest) : undefined;
    const key = `${route.upstream.name}\0${route.repo}\0:${tag}`;
    return this.#flights.do(key, () => (cached ? this.#revalidate(route, tag, cached, undefined, false) : this.#fetchTag(route, tag, false)));
  }

  /** A cached manifest by digest, with no upstream contact; undefined when not cached. */
  cached(digest: string): HotManifest | undefined {
    const hot = this.#hot.getManifest(digest);
    if (hot) return hot;
    const row = this.#metadata.getManifest(digest);
    if (!row) return undefined;
    const manifest = { digest: row.digest, mediaType: row.mediaType, bytes: row.bytes };
    this.#hot.setManifest(manifest);
    return manifest;
  }

  /** A digest {@link hit} could not answer: not cached, or `cached` for another repository. */
  async #byDigest(route: Route, digest: Digest, cached: HotManifest | undefined): Promise<ManifestResult> {
    const key = `${route.upstream.name}\0${route.repo}\0${digest.value}`;
    const shared = this.#flights.do(key, async () => {
      if (cached) {
        // Cached for another repository: ask the upstream (a HEAD, no bytes) whether this one
        // holds it too, so a cache hit never answers for a repository the upstream would refuse.
        try {
          const res = await withinTimeout(route.upstream, `manifest ${digest.value} of ${route.repo}`, (signal) =>
            route.upstream.request({
              method: 'HEAD',
              repository: route.repo,
              path: `${route.repo}/manifests/${digest.value}`,
              headers: { accept: DEFAULT_ACCEPT },
              signal,
            }),
          );
          discard(res.body);
          if (res.status !== 200) {
            throw upstreamError(res, { upstream: route.upstream.name, repo: route.repo, notFound: 'MANIFEST_UNKNOWN', subject: digest.value });
          }
        } catch (err) {
          // Unconfirmed, it is served only if the cache itself vouches for this repository (an
          // index cached for it needs this digest); otherwise the outage error, as for an uncached one.
          if (!isUpstreamOutage(err) || !knownToHold(this.#metadata, route.upstream.name, route.repo, digest.value)) throw err;
          return { ...cached, cache: 'STALE' };
        }
        recordLink(this.#hot, this.#metadata, 'manifest link', route.upstream.name, route.repo, digest.value);
        return { ...cached, cache: 'HIT' };
      }
      // The shared bucket holds manifests by digest; served from it to a repository an index cached for it vouches for.
      const shared = this.#bucket && knownToHold(this.#metadata, route.upstream.name, route.repo, digest.value) ? await this.#bucket.manifest(digest.value) : undefined;
      if (shared) {
        const manifest = { digest: digest.value, mediaType: shared.mediaType, bytes: shared.bytes };
        this.#store(route, manifest, undefined, false);
        return { ...manifest, cache: 'MISS' };
      }
      const fetched = await this.#fetch(route, digest.value, DEFAULT_ACCEPT, digest);
      this.#store(route, fetched);
      return { ...fetched, cache: 'MISS' };
    });
    try {
      return await waitAtMost(route.upstream, `manifest ${digest.value} of ${route.repo}`, shared);
    } catch (err) {
      // `cached` is another repository's: served unconfirmed only on the cache's own word, as above.
      if (!cached || !isUpstreamOutage(err) || !knownToHold(this.#metadata, route.upstream.name, route.repo, digest.value)) throw err;
      return { ...cached, cache: 'STALE' };
    }
  }

  /** A tag {@link hit} could not answer (unknown, past its TTL, or of a type this client cannot take), with what is `known` of it. */
  async #byTag(route: Route, tag: string, accept: readonly string[], known: HotTag | undefined, cached: HotManifest | undefined, viaPeer: boolean): Promise<ManifestResult> {
    const name = route.upstream.name;
    const what = `tag ${tag} of ${route.repo}`;
    if (known && cached && acceptsMediaType(accept, cached.mediaType)) {
      if (known.retryAt !== undefined && this.#now() < known.retryAt) return { ...cached, cache: 'STALE' };
      try {
        return await waitAtMost(route.upstream, what, this.#flights.do(`${name}\0${route.repo}\0:${tag}`, () => this.#revalidate(route, tag, cached, known, viaPeer)));
      } catch (err) {
        // Timed out waiting, or the tag moved and its new manifest could not be fetched.
        if (!isUpstreamOutage(err)) throw err;
        return { ...cached, cache: 'STALE' };
      }
    }
    const result = await waitAtMost(route.upstream, what, this.#flights.do(`${name}\0${route.repo}\0:${tag}`, () => this.#fetchTag(route, tag, viaPeer)));
    if (acceptsMediaType(accept, result.mediaType)) return result;
    // The tag resolves to a type this client cannot take (e.g. an index for an old client):
    // pass its own Accept through, as the upstream would have negotiated it directly.
    const negotiated = await this.#fetch(route, tag, accept.join(', '));
    this.#store(route, negotiated);
    return { ...negotiated, cache: 'MISS' };
  }

  async #revalidate(route: Route, tag: string, cached: HotManifest, known: HotTag | undefined, viaPeer: boolean): Promise<ManifestResult> {
    const name = route.upstream.name;
    const fromOwner = viaPeer ? await this.#askOwner(route, tag) : undefined;
    if (fromOwner !== undefined) {
      if (fromOwner.digest === cached.digest) return this.#touch(route, tag, cached);
      this.#store(route, fromOwner, tag, false);
      return { ...fromOwner, cache: 'MISS' };
    }
    try {
      const res = await withinTimeout(route.upstream, `tag ${tag} of ${route.repo}`, (signal) =>
        route.upstream.request({
          method: 'HEAD',
          repository: route.repo,
          path: `${route.repo}/manifests/${tag}`,
          headers: { accept: DEFAULT_ACCEPT },
          signal,
        }),
      );
      discard(res.body);
      if (res.status === 404) this.#forget(route, tag);
      if (res.status !== 200) {
        throw upstreamError(res, { upstream: name, repo: route.repo, notFound: 'MANIFEST_UNKNOWN', subject: `tag ${tag}` });
      }
      if (res.headers['docker-content-digest'] === cached.digest) return this.#touch(route, tag, cached);
    } catch (err) {
      if (!isUpstreamOutage(err)) throw err;
      const backoff = Math.min(STALE_RETRY_MS, route.upstream.config.tagTTL);
      if (known) {
        const { digest, mediaType, fetchedAt } = known;
        this.#hot.setTag(name, route.repo, tag, { digest, mediaType, fetchedAt, retryAt: this.#now() + backoff });
      }
      this.#log.warn({ upstream: name, repo: route.repo, tag, err: (err as Error).message, retryInMs: backoff }, 'tag revalidation failed; serving stale');
      return { ...cached, cache: 'STALE' };
    }
    // The owner already failed to answer: the refetch goes straight to the upstream.
    return this.#fetchTag(route, tag, false);
  }

  /** The tag still names `cached`: fresh again from now. */
  #touch(route: Route, tag: string, cached: HotManifest): ManifestResult {
    const name = route.upstream.name;
    const now = this.#now();
    this.#metadata.tryWrite('tag freshness', () => this.#metadata.touchTag(name, route.repo, tag, now));
    this.#hot.setTag(name, route.repo, tag, { digest: cached.digest, mediaType: cached.mediaType, fetchedAt: now });
    return { ...cached, cache: 'HIT' };
  }

  #forget(route: Route, tag: string): void {
    const name = route.upstream.name;
    this.#metadata.tryWrite('tag removal', () => this.#metadata.deleteTag(name, route.repo, tag));
    this.#hot.deleteTag(name, route.repo, tag);
  }

  /**
   * The tag's manifest from its owner replica, when another one owns it and answers; undefined to
   * ask the upstream. The owner's "no such tag" is the upstream's, relayed: MANIFEST_UNKNOWN.
   */
  async #askOwner(route: Route, tag: string): Promise<HotManifest | undefined> {
    const answer = await this.#peerTags?.(route, tag);
    if (answer !== 'unknown') return answer;
    this.#forget(route, tag);
    throw new RegistryError('MANIFEST_UNKNOWN', {
      message: `manifest unknown: tag ${tag} of ${route.repo} (upstream ${route.upstream.name}, per the replica owning the tag)`,
      detail: { upstream: route.upstream.name, repo: route.repo, tag },
    });
  }

  async #fetchTag(route: Route, tag: string, viaPeer: boolean): Promise<ManifestResult> {
    const fromOwner = viaPeer ? await this.#askOwner(route, tag) : undefined;
    if (fromOwner !== undefined) {
      this.#store(route, fromOwner, tag, false);
      return { ...fromOwner, cache: 'MISS' };
    }
    const fetched = await this.#fetch(route, tag, DEFAULT_ACCEPT);
    this.#store(route, fetched, tag);
    return { ...fetched, cache: 'MISS' };
  }

  /**
   * GETs a manifest, head and body within the upstream's `timeout`, and checks its bytes against
   * the digest asked for or announced.
   */
  #fetch(route: Route, reference: string, accept: string, expected?: Digest): Promise<HotManifest> {
    return withinTimeout(route.upstream, `manifest ${reference} of ${route.repo}`, (signal) => this.#fetchWithin(route, reference, accept, expected, signal));
  }

  async #fetchWithin(route: Route, reference: string, accept: string, expected: Digest | undefined, signal: AbortSignal): Promise<HotManifest> {
    const name = route.upstream.name;
    const res = await route.upstream.request({
      method: 'GET',
      repository: route.repo,
      path: `${route.repo}/manifests/${reference}`,
      headers: { accept },
      signal,
    });
    if (res.status !== 200) {
      discard(res.body);
      throw upstreamError(res, { upstream: name, repo: route.repo, notFound: 'MANIFEST_UNKNOWN', subject: reference });
    }
    let bytes: Buffer;
    try {
      bytes = await readBody(res.body, MANIFEST_MAX_BYTES);
    } catch (cause) {
      if (cause instanceof BodyTooLargeError) {
        throw new RegistryError('BAD_GATEWAY', { message: `upstream ${name} sent a manifest larger than ${MANIFEST_MAX_BYTES} bytes for ${reference}`, cause });
      }
      // A body cut off or stalled (bodyTimeout) is the network failing, an outage like no answer at all.
      throw new RegistryError('UNAVAILABLE', { message: `upstream ${name} dropped or stalled the connection while sending manifest ${reference}`, cause });
    }
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    // A digest request must match exactly (OCI distribution-spec: "the client SHOULD verify");
    // for a tag, a sha256 Docker-Content-Digest the upstream announced must match the bytes.
    const announced = res.headers['docker-content-digest'];
    const mustMatch = expected?.value ?? (announced?.startsWith('sha256:') ? parseDigest(announced).value : undefined);
    if (mustMatch !== undefined && mustMatch !== digest) {
      throw new RegistryError('BAD_GATEWAY', { message: `upstream ${name} sent a manifest whose sha256 does not match ${mustMatch}`,
        detail: { expected: mustMatch, actual: digest, reference },
      });
    }
    const contentType = res.headers['content-type']?.split(';')[0]?.trim();
    const mediaType = contentType && contentType !== 'application/json' && contentType !== 'text/plain'
      ? contentType
      : (declaredMediaType(bytes) ?? contentType ?? 'application/octet-stream');
    return { digest, mediaType, bytes };
  }

  /** Caches a manifest (and its tag); one from the upstream is kept in the shared bucket too (`share`). */
  #store(route: Route, manifest: HotManifest, tag?: string, share = true): void {
    const name = route.upstream.name;
    // On a full disk the client still gets the upstream's answer (MISS); nothing is kept, hot or not.
    if (!this.#metadata.tryWrite('manifest', () => this.#metadata.putManifest(manifest, { upstream: name, repo: route.repo }, tag))) return;
    if (share) this.#bucket?.putManifest(manifest.digest, manifest.mediaType, manifest.bytes);
    this.#hot.setManifest(manifest);
    this.#hot.setLink(name, route.repo, manifest.digest);
    if (tag !== undefined) {
      this.#hot.setTag(name, route.repo, tag, { digest: manifest.digest, mediaType: manifest.mediaType, fetchedAt: this.#now() });
    }
  }
}
