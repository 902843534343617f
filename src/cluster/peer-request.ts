/**
 * @module cluster/peer-request
 * What every "ask the key's owner instead of the upstream" shares: who owns a key among the members
 * up, one authenticated GET to it, and a deadline of half the upstream's timeout so a fallback to
 * the upstream still fits in the client's wait. Callers decide what an answer means.
 */
import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import type { Membership } from './membership.ts';
import type { PeerAuth } from './peer-auth.ts';
import type { Logger } from '../util/logger.ts';
import { owner } from './rendezvous.ts';

/** 'peer': the owner answered; 'fallback': the owner failed to, the upstream is asked instead. */
export type PeerResult = 'peer' | 'fallback';

export interface PeerResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/** One GET to a peer; injectable so tests need no server. */
export type PeerGet = (url: string, init: { headers: Record<string, string>; signal: AbortSignal }) => Promise<PeerResponse>;

export interface PeerRequestOptions {
  membership: Pick<Membership, 'self' | 'up'>;
  auth: Pick<PeerAuth, 'headers'>;
  get?: PeerGet;
}

/** Either what `read` made of the owner's response, or why the owner could not be used. */
export type PeerOutcome<T> = { ok: true; value: T } | { ok: false; reason: string };

export class PeerRequest {
  readonly #opts: PeerRequestOptions;
  readonly #agent: Agent | undefined;
  readonly #get: PeerGet;

  constructor(opts: PeerRequestOptions) {
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

  /** The owner of `key` among the members up, or undefined when that is this replica (or none is known). */
  ownerOf(key: string): string | undefined {
    const own = owner(key, this.#opts.membership.up());
    return own === undefined || own === this.#opts.membership.self ? undefined : own;
  }

  /**
   * GETs `url` with the cluster secret and runs `read` on the response, both within `waitMs`
   * (the deadline is lifted once `read` returns, so a body handed on keeps flowing). A failure
   * (connect error, deadline, `read` throwing) is an outcome, not an exception; only `signal`'s
   * own abort is thrown.
   */
  async get<T>(url: string, waitMs: number, read: (res: PeerResponse, signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<PeerOutcome<T>> {
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error(`no answer within ${waitMs} ms`)), Math.max(1, waitMs));
    const both = signal ? AbortSignal.any([signal, deadline.signal]) : deadline.signal;
    try {
      const res = await this.#get(url, { headers: this.#opts.auth.headers(), signal: both });
      return { ok: true, value: await read(res, both) };
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      return { ok: false, reason: deadline.signal.aborted ? (deadline.signal.reason as Error).message : describe(err) };
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.#agent?.close();
  }
}

export interface PeerLookupOptions extends PeerRequestOptions {
  log: Logger;
  onResult?: (result: PeerResult) => void;
  /** A client shared with other peer lookups (its connections); made from the options above when absent. */
  requests?: PeerRequest;
}

/** A lookup by owner: what it asks through (a client shared with other lookups, or its own) and what it closes. */
export abstract class PeerLookup {
  protected readonly requests: PeerRequest;
  readonly #ownsRequests: boolean;

  constructor(opts: PeerLookupOptions) {
    this.#ownsRequests = opts.requests === undefined;
    this.requests = opts.requests ?? new PeerRequest(opts);
  }

  /** Closes the client's connections when this lookup made it; a shared one is closed by its maker. */
  async close(): Promise<void> {
    if (this.#ownsRequests) await this.requests.close();
  }
}

/** Where `owner` serves one object of a route to its peers: `<owner><path>/<name>?upstream=<name>&repo=<repo>`. */
export function peerUrl(owner: string, path: string, name: string, route: { upstream: { name: string }; repo: string }): string {
  return `${owner}${path}/${name}?upstream=${encodeURIComponent(route.upstream.name)}&repo=${encodeURIComponent(route.repo)}`;
}

/** Half the upstream's timeout: the owner's share of the client's wait, leaving the rest for a fallback. */
export function peerWaitMs(upstreamTimeoutMs: number): number {
  return Math.max(1, Math.floor(upstreamTimeoutMs / 2));
}

/** Drops a response body unread. */
export function discardPeerBody(res: PeerResponse): void {
  res.body.on('error', () => {});
  res.body.destroy();
}

export function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** undici's connect errors carry the reason in `code` (ECONNREFUSED, ...). */
function describe(err: unknown): string {
  const e = err as Error & { code?: string; cause?: Error & { code?: string } };
  return e?.code ?? e?.cause?.code ?? e?.message ?? String(err);
}
