/**
 * @module cluster/membership
 * Which replicas make up the cluster and which of them answer. Each round re-reads the member
 * list (static, or DNS so scaling is picked up) and checks every other member's
 * GET /cluster/v1/health with the shared secret; `failAfter` failures in a row mark a member down,
 * one answer marks it up again. Self is always up. Rounds are started by a timer in service and
 * called directly by tests, which inject the clock, fetch and member list.
 */
import type { Logger } from '../util/logger.ts';
import type { PeerAuth } from './peer-auth.ts';

/**
 * A check waits at least this long for an answer, however short the interval: a replica busy hashing
 * a large fill on a loaded machine answered in 200–400 ms, and marking it down for that moved its keys
 * away mid-fill. A dead one refuses the connection at once, so this does not slow noticing it.
 */
const CHECK_TIMEOUT_MIN_MS = 1000;

export type MemberStateName = 'up' | 'down' | 'unknown';

export interface MemberState {
  readonly url: string;
  readonly self: boolean;
  readonly state: MemberStateName;
  /** When the last check answered (ms since the epoch); null until one did. */
  readonly lastOk: number | null;
  /** The last failed check's reason; null until one failed. */
  readonly lastError: string | null;
  readonly lastErrorAt: number | null;
  readonly consecutiveFailures: number;
  /** How long the last good check took, ms. */
  readonly rttMs: number | null;
  /** The version the member reported. */
  readonly version: string | null;
}

/** What the peer's health endpoint answers; `self` is how the member names itself. */
export interface HealthAnswer {
  self: string;
  version: string;
  members: Array<{ url: string; state: MemberStateName }>;
}

/** The subset of fetch the checks use. */
export type PeerFetch = (url: string, init: { headers: Record<string, string>; signal: AbortSignal }) => Promise<{ status: number; json(): Promise<unknown> }>;

export interface MembershipOptions {
  /** This replica's URL as the others reach it. */
  self: string;
  /** The current member list (self included or not: it is added). */
  members: () => Promise<readonly string[]> | readonly string[];
  auth: PeerAuth;
  /** Between rounds, and the deadline of one check. */
  intervalMs: number;
  failAfter: number;
  log: Logger;
  now?: () => number;
  fetch?: PeerFetch;
}

/** The health path, under the prefix every internal endpoint shares. */
export const HEALTH_PATH = '/cluster/v1/health';

type MutableState = { -readonly [K in keyof MemberState]: MemberState[K] };

export class Membership {
  readonly self: string;
  readonly #opts: MembershipOptions;
  readonly #now: () => number;
  readonly #fetch: PeerFetch;
  readonly #members = new Map<string, MutableState>();
  #resolveError: string | null = null;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;
  #stopped = false;
  readonly #inFlight = new Set<AbortController>();

  constructor(opts: MembershipOptions) {
    this.#opts = opts;
    this.self = opts.self;
    this.#now = opts.now ?? Date.now;
    this.#fetch = opts.fetch ?? ((url, init) => fetch(url, init));
    this.#members.set(opts.self, this.#fresh(opts.self));
  }

  /** Every member, self first then by URL. */
  members(): MemberState[] {
    const all = [...this.#members.values()].map((m) => ({ ...m }));
    return all.sort((a, b) => (a.self !== b.self ? (a.self ? -1 : 1) : a.url < b.url ? -1 : 1));
  }

  /**
   * Whether a connection from `address` comes from a listed member (up or not): what lets a peer reach a
   * listener that otherwise wants a PROXY header. Members named by IP address match; host names do not.
   */
  isMemberAddress(address: string | undefined): boolean {
    if (address === undefined) return false;
    const plain = address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
    for (const url of this.#members.keys()) {
      if (new URL(url).hostname.replace(/^\[|\]$/g, '') === plain) return true;
    }
    return false;
  }

  /** The URLs of members up (self included), sorted: what ownership is computed over. */
  up(): string[] {
    return this.members().filter((m) => m.state === 'up').map((m) => m.url).sort();
  }

  /** Members per state. */
  counts(): Record<MemberStateName, number> {
    const counts: Record<MemberStateName, number> = { up: 0, down: 0, unknown: 0 };
    for (const m of this.#members.values()) counts[m.state]++;
    return counts;
  }

  /** Why the last member-list lookup failed (the previous list is kept meanwhile); null when it worked. */
  get resolveError(): string | null {
    return this.#resolveError;
  }

  /** Runs a round now and then every interval, one at a time. */
  start(): void {
    if (this.#timer || this.#stopped) return;
    const tick = () => {
      this.#round ??= this.round().finally(() => (this.#round = undefined));
    };
    tick();
    this.#timer = setInterval(tick, this.#opts.intervalMs);
    this.#timer.unref();
  }

  /** Stops the timer and cuts checks in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const c of this.#inFlight) c.abort(new Error('membership stopped'));
    await this.#round?.catch(() => {});
  }

  /** One round: re-read the member list, then check every other member side by side. */
  async round(): Promise<void> {
    await this.#refreshList();
    await Promise.all([...this.#members.values()].filter((m) => !m.self).map((m) => this.#check(m)));
  }

  async #refreshList(): Promise<void> {
    let listed: readonly string[];
    try {
      listed = await this.#opts.members();
    } catch (err) {
      const reason = (err as Error).message;
      if (reason !== this.#resolveError) this.#opts.log.warn({ err: reason }, 'cluster member list lookup failed; keeping the previous list');
      this.#resolveError = reason;
      return;
    }
    if (this.#resolveError !== null) this.#opts.log.info('cluster member list lookup works again');
    this.#resolveError = null;
    const wanted = new Set([this.self, ...listed]);
    for (const url of wanted) {
      if (this.#members.has(url)) continue;
      this.#members.set(url, this.#fresh(url));
      this.#opts.log.info({ member: url }, 'cluster member joined the list');
    }
    for (const url of [...this.#members.keys()]) {
      if (wanted.has(url)) continue;
      this.#members.delete(url);
      this.#opts.log.info({ member: url }, 'cluster member left the list');
    }
  }

  async #check(m: MutableState): Promise<void> {
    const controller = new AbortController();
    this.#inFlight.add(controller);
    const timeoutMs = Math.max(this.#opts.intervalMs, CHECK_TIMEOUT_MIN_MS);
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const started = this.#now();
    let failure: string | undefined;
    let version: string | null = null;
    try {
      const res = await this.#fetch(`${m.url}${HEALTH_PATH}`, { headers: this.#opts.auth.headers(), signal: controller.signal });
      if (res.status === 200) {
        const body = (await res.json()) as Partial<HealthAnswer> | null;
        version = typeof body?.version === 'string' ? body.version : null;
        // A member answering under another name is someone else (a reused address, a mis-set self).
        if (body?.self !== m.url) failure = `answered as ${JSON.stringify(body?.self)}`;
      } else {
        failure = res.status === 401 ? 'refused the cluster secret (401)' : `answered ${res.status}`;
      }
    } catch (err) {
      failure = controller.signal.aborted ? (controller.signal.reason as Error).message : describe(err);
    } finally {
      clearTimeout(timer);
      this.#inFlight.delete(controller);
    }
    // A member dropped from the list while this check ran is not brought back.
    if (this.#stopped || this.#members.get(m.url) !== m) return;
    const at = this.#now();
    if (failure === undefined) {
      if (m.state !== 'up') this.#opts.log.info({ member: m.url, was: m.state }, 'cluster member up');
      Object.assign(m, { state: 'up', lastOk: at, consecutiveFailures: 0, rttMs: at - started, version });
      return;
    }
    m.consecutiveFailures++;
    m.lastError = failure;
    m.lastErrorAt = at;
    if (m.consecutiveFailures >= this.#opts.failAfter && m.state !== 'down') {
      this.#opts.log.warn({ member: m.url, was: m.state, failures: m.consecutiveFailures, err: failure }, 'cluster member down');
      m.state = 'down';
    }
  }

  #fresh(url: string): MutableState {
    const self = url === this.self;
    return { url, self, state: self ? 'up' : 'unknown', lastOk: null, lastError: null, lastErrorAt: null, consecutiveFailures: 0, rttMs: null, version: null };
  }
}

/** fetch's "fetch failed" hides the reason in `cause` (ECONNREFUSED, ...). */
function describe(err: unknown): string {
  const e = err as Error & { cause?: Error & { code?: string } };
  if (e?.cause) return `${e.message}: ${e.cause.code ?? e.cause.message}`;
  return e?.message ?? String(err);
}
