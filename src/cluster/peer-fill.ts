/**
 * @module cluster/peer-fill
 * One upstream fetch per blob cluster-wide: a replica missing a blob asks the blob's owner (the
 * rendezvous winner among the members it sees up) for it instead of the upstream, so however many
 * replicas are asked, only the owner's single fill crosses the WAN. The bytes still go through the
 * local fill (hash, size check, commit); this only chooses where they come from. When the owner
 * does not answer in time or answers anything but 200, the upstream is used directly: a partition
 * costs a duplicate fetch, never an error.
 */
import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import type { FillSource } from '../cache/blobs/blob-cache.ts';
import type { Digest } from '../registry/digest.ts';
import type { Route } from '../proxy/router.ts';
import type { Logger } from '../util/logger.ts';
import type { Membership } from './membership.ts';
import type { PeerAuth } from './peer-auth.ts';
import { owner } from './rendezvous.ts';

/** Where an owner serves blobs to its peers: `<prefix>/<digest>?upstream=<name>&repo=<repo>`. */
export const PEER_BLOBS_PATH = '/cluster/v1/blobs';

/** 'peer': the owner is the fill's source; 'fallback': the owner failed to answer, the upstream is. */
export type PeerFillResult = 'peer' | 'fallback';

export interface PeerResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/** One GET to a peer; injectable so tests need no server. */
export type PeerGet = (url: string, init: { headers: Record<string, string>; signal: AbortSignal }) => Promise<PeerResponse>;

export interface PeerFillOptions {
  membership: Pick<Membership, 'self' | 'up'>;
  auth: Pick<PeerAuth, 'headers'>;
  log: Logger;
  get?: PeerGet;
  onResult?: (result: PeerFillResult) => void;
}

export class PeerFill {
  readonly #opts: PeerFillOptions;
  readonly #agent: Agent | undefined;
  readonly #get: PeerGet;

  constructor(opts: PeerFillOptions) {
    this.#opts = opts;
    if (opts.get) {
      this.#get = opts.get;
    } else {
      const agent = new Agent({ keepAliveTimeout: 30_000 });
      this.#agent = agent;
      this.#get = async (url, init) => {
        const res = await request(url, { method: 'GET', headers: init.headers, signal: init.signal, dispatcher: agent });
        return { status: res.statusCode, headers: res.headers, body: res.body };
      };
    }
  }

  /** The owner of `digest` among the members up, or undefined when that is this replica (or none is known). */
  ownerOf(digest: Digest): string | undefined {
    const own = owner(digest.value, this.#opts.membership.up());
    return own === undefined || own === this.#opts.membership.self ? undefined : own;
  }

  /**
   * The owner's answer as a fill source; undefined when this replica owns the blob or the owner
   * failed (the caller then opens the upstream). Only the fill's own abort is thrown.
   */
  async source(route: Route, digest: Digest, signal: AbortSignal): Promise<FillSource | undefined> {
    const own = this.ownerOf(digest);
    if (own === undefined) return undefined;
    const query = `upstream=${encodeURIComponent(route.upstream.name)}&repo=${encodeURIComponent(route.repo)}`;
    const url = `${own}${PEER_BLOBS_PATH}/${digest.value}?${query}`;
    // Half the upstream's timeout for the owner's answer, so a fallback still has time within the client's wait.
    const waitMs = Math.max(1, Math.floor(route.upstream.config.timeout / 2));
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error(`no answer within ${waitMs} ms`)), waitMs);
    let res: PeerResponse;
    try {
      // The fill's signal stays on the body: a fill given up cuts the owner's stream too.
      res = await this.#get(url, { headers: this.#opts.auth.headers(), signal: AbortSignal.any([signal, deadline.signal]) });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      return this.#fallback(own, digest, deadline.signal.aborted ? (deadline.signal.reason as Error).message : describe(err));
    } finally {
      clearTimeout(timer);
    }
    if (res.status !== 200) {
      res.body.on('error', () => {});
      res.body.destroy();
      return this.#fallback(own, digest, `answered ${res.status}`);
    }
    this.#opts.onResult?.('peer');
    this.#opts.log.debug({ digest: digest.value, owner: own }, 'blob filled from its owner');
    const length = Number(header(res.headers['content-length']));
    return {
      size: header(res.headers['content-length']) !== undefined && Number.isSafeInteger(length) && length >= 0 ? length : undefined,
      mediaType: header(res.headers['content-type']),
      body: res.body,
    };
  }

  async close(): Promise<void> {
    await this.#agent?.close();
  }

  #fallback(own: string, digest: Digest, reason: string): undefined {
    this.#opts.onResult?.('fallback');
    this.#opts.log.warn({ digest: digest.value, owner: own, err: reason }, 'blob owner did not serve the blob; filling from the upstream');
    return undefined;
  }
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** undici's connect errors carry the reason in `code` (ECONNREFUSED, ...). */
function describe(err: unknown): string {
  const e = err as Error & { code?: string; cause?: Error & { code?: string } };
  return e?.code ?? e?.cause?.code ?? e?.message ?? String(err);
}
