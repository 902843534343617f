/**
 * @module cluster/peer-fill
 * One upstream fetch per blob cluster-wide: a replica missing a blob asks the blob's owner (the
 * rendezvous winner among the members it sees up) for it instead of the upstream, so however many
 * replicas are asked, only the owner's single fill crosses the WAN. The bytes still go through the
 * local fill (hash, size check, commit); this only chooses where they come from. When the owner
 * does not answer in time or answers anything but 200, the upstream is used directly: a partition
 * costs a duplicate fetch, never an error.
 */
import type { FillSource } from '../cache/blobs/blob-cache.ts';
import type { Digest } from '../registry/digest.ts';
import type { Route } from '../proxy/router.ts';
import { PeerLookup, discardPeerBody, header, peerUrl, peerWaitMs, type PeerLookupOptions, type PeerResponse, type PeerResult } from './peer-request.ts';

export type { PeerGet, PeerResponse } from './peer-request.ts';

/** Where an owner serves blobs to its peers: `<prefix>/<digest>?upstream=<name>&repo=<repo>`. */
export const PEER_BLOBS_PATH = '/cluster/v1/blobs';

/** 'peer': the owner is the fill's source; 'fallback': the owner failed to answer, the upstream is. */
export type PeerFillResult = PeerResult;

export class PeerFill extends PeerLookup {
  readonly #opts: PeerLookupOptions;

  constructor(opts: PeerLookupOptions) {
    super(opts);
    this.#opts = opts;
  }

  /** The owner of `digest` among the members up, or undefined when that is this replica (or none is known). */
  ownerOf(digest: Digest): string | undefined {
    return this.requests.ownerOf(digest.value);
  }

  /**
   * The owner's answer as a fill source; undefined when this replica owns the blob or the owner
   * failed (the caller then opens the upstream). Only the fill's own abort is thrown.
   */
  async source(route: Route, digest: Digest, signal: AbortSignal): Promise<FillSource | undefined> {
    const own = this.ownerOf(digest);
    if (own === undefined) return undefined;
    const url = peerUrl(own, PEER_BLOBS_PATH, digest.value, route);
    // The fill's signal stays on the body: a fill given up cuts the owner's stream too.
    const outcome = await this.requests.get(url, peerWaitMs(route.upstream.config.timeout), async (res: PeerResponse) => {
      if (res.status !== 200) {
        discardPeerBody(res);
        throw new Error(`answered ${res.status}`);
      }
      return res;
    }, signal);
    if (!outcome.ok) {
      this.#opts.onResult?.('fallback');
      this.#opts.log.warn({ digest: digest.value, owner: own, err: outcome.reason }, 'blob owner did not serve the blob; filling from the upstream');
      return undefined;
    }
    const res = outcome.value;
    this.#opts.onResult?.('peer');
    this.#opts.log.debug({ digest: digest.value, owner: own }, 'blob filled from its owner');
    const length = Number(header(res.headers['content-length']));
    return {
      size: header(res.headers['content-length']) !== undefined && Number.isSafeInteger(length) && length >= 0 ? length : undefined,
      mediaType: header(res.headers['content-type']),
      body: res.body,
      origin: 'peer',
    };
  }
}
