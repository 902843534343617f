/**
 * @module cluster/peer-tags
 * One upstream resolution per tag cluster-wide: a replica that must ask the upstream about a tag
 * (unknown here, or past its TTL) asks the tag's owner — the rendezvous winner for
 * `<upstream>/<repo>:<tag>` among the members up — which answers from its cache within its TTL or
 * resolves the tag upstream itself. The bytes are checked against the digest the owner announces
 * before anything is kept. An owner that cannot answer in time, answers an error, or sends bytes
 * that do not match its digest is passed over for the upstream: a bad peer costs a duplicate
 * fetch, never an error. Only the owner's 404 is final (the upstream has no such tag).
 */
import { createHash } from 'node:crypto';
import { declaredMediaType } from '../registry/media-types.ts';
import type { HotManifest } from '../cache/hot-cache.ts';
import type { Route } from '../proxy/router.ts';
import { MANIFEST_MAX_BYTES } from '../proxy/manifest-proxy.ts';
import { readBody } from '../util/read-body.ts';
import { PeerLookup, discardPeerBody, header, peerUrl, peerWaitMs, type PeerLookupOptions, type PeerResponse } from './peer-request.ts';

/** Where an owner serves manifests to its peers: `<prefix>/<tag-or-digest>?upstream=<name>&repo=<repo>`. */
export const PEER_MANIFESTS_PATH = '/cluster/v1/manifests';

/** The rendezvous key of a tag: every replica derives the same one from the request alone. */
export function tagKey(upstream: string, repo: string, tag: string): string {
  return `${upstream}/${repo}:${tag}`;
}

export class PeerTags extends PeerLookup {
  readonly #opts: PeerLookupOptions;

  constructor(opts: PeerLookupOptions) {
    super(opts);
    this.#opts = opts;
  }

  /** The owner of the tag among the members up, or undefined when that is this replica (or none is known). */
  ownerOf(route: Route, tag: string): string | undefined {
    return this.requests.ownerOf(tagKey(route.upstream.name, route.repo, tag));
  }

  /**
   * The tag's manifest as its owner resolves it; 'unknown' when the owner answers 404; undefined
   * when this replica owns the tag or the owner failed (the caller then asks the upstream).
   */
  async resolve(route: Route, tag: string): Promise<HotManifest | 'unknown' | undefined> {
    const own = this.ownerOf(route, tag);
    if (own === undefined) return undefined;
    const url = peerUrl(own, PEER_MANIFESTS_PATH, encodeURIComponent(tag), route);
    const outcome = await this.requests.get(url, peerWaitMs(route.upstream.config.timeout), readManifest);
    if (!outcome.ok) {
      this.#opts.onResult?.('fallback');
      this.#opts.log.warn({ upstream: route.upstream.name, repo: route.repo, tag, owner: own, err: outcome.reason }, 'tag owner did not resolve the tag; asking the upstream');
      return undefined;
    }
    this.#opts.onResult?.('peer');
    this.#opts.log.debug({ upstream: route.upstream.name, repo: route.repo, tag, owner: own }, 'tag resolved by its owner');
    return outcome.value;
  }
}

/** The owner's answer: a manifest whose sha256 is the digest announced, 'unknown' for 404; anything else throws (a fallback). */
async function readManifest(res: PeerResponse): Promise<HotManifest | 'unknown'> {
  if (res.status === 404) {
    discardPeerBody(res);
    return 'unknown';
  }
  if (res.status !== 200) {
    discardPeerBody(res);
    throw new Error(`answered ${res.status}`);
  }
  // An owner that could only serve a stale copy (its upstream down) gives no fresh answer to keep.
  if (header(res.headers['x-cache']) === 'STALE') {
    discardPeerBody(res);
    throw new Error('answered with a stale copy');
  }
  const announced = header(res.headers['docker-content-digest']);
  if (announced === undefined || !announced.startsWith('sha256:')) {
    discardPeerBody(res);
    throw new Error('announced no sha256 digest');
  }
  const bytes = await readBody(res.body, MANIFEST_MAX_BYTES);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (digest !== announced) throw new Error(`sent bytes whose sha256 ${digest} is not the announced ${announced}`);
  const contentType = header(res.headers['content-type'])?.split(';')[0]?.trim();
  const mediaType = contentType && contentType !== 'application/json' ? contentType : (declaredMediaType(bytes) ?? contentType ?? 'application/octet-stream');
  return { digest, mediaType, bytes };
}
