/**
 * @module upstream/auth/token-cache
 * Bearer tokens from an upstream's token service, cached per (realm, service, scope) until shortly
 * before they expire, with one fetch in flight per key however many requests want it.
 *
 * Lifetimes follow the distribution "Token Authentication Specification" (docs/spec/auth/token.md,
 * "Token Response Fields"): `token` or its OAuth 2.0 alias `access_token`; `expires_in` seconds,
 * 60 when omitted; counted from `issued_at` (RFC 3339) when given, else from when the exchange
 * completed.
 */
import { abortable } from '../../util/abortable.ts';
import { SingleFlight } from '../../util/single-flight.ts';

/** A token as the cache keeps it. Never log `token`. */
export interface BearerToken {
  readonly token: string;
  /** Epoch ms after which the token service says the token is invalid. */
  readonly expiresAt: number;
  /** Epoch ms after which the cache stops handing the token out, so it does not expire mid-request. */
  readonly staleAt: number;
}

/** The spec's default when `expires_in` is absent. */
export const DEFAULT_TOKEN_LIFETIME_MS = 60_000;
/** Refresh this long before expiry at most; short-lived tokens use a fifth of their lifetime instead. */
const MAX_REFRESH_MARGIN_MS = 30_000;

/**
 * Reads a token response body. Throws a plain Error with a reason (the caller wraps it) when
 * neither `token` nor `access_token` is a non-empty string.
 */
export function parseTokenResponse(body: unknown, now: number): BearerToken {
  if (body === null || typeof body !== 'object') throw new Error('the token response is not a JSON object');
  const fields = body as Record<string, unknown>;
  // Both may appear and "should be equivalent"; `token` is the registry spec's own name.
  const token = nonEmptyString(fields.token) ?? nonEmptyString(fields.access_token);
  if (token === undefined) throw new Error('the token response has neither "token" nor "access_token"');
  return { token, ...tokenLifetime(fields.expires_in, fields.issued_at, now) };
}

/**
 * When a token stops being usable. `issued_at` is honoured unless it contradicts our clock (in the
 * future, or so far past that the token would already be dead): clocks drift, and a token service
 * that just answered is better trusted for "valid now" than its timestamp is.
 */
export function tokenLifetime(expiresIn: unknown, issuedAt: unknown, now: number): { expiresAt: number; staleAt: number } {
  const lifetime =
    typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1000 : DEFAULT_TOKEN_LIFETIME_MS;
  const issued = typeof issuedAt === 'string' ? Date.parse(issuedAt) : Number.NaN;
  const base = Number.isFinite(issued) && issued <= now && issued + lifetime > now ? issued : now;
  const expiresAt = base + lifetime;
  return { expiresAt, staleAt: expiresAt - Math.min(MAX_REFRESH_MARGIN_MS, lifetime / 5) };
}

export interface TokenCacheOptions {
  /** Entries kept at most; one per repository pulled, so bound it. */
  maxEntries?: number;
  /** Clock in epoch ms (tests move it). */
  now?: () => number;
}

/**
 * Cache plus single-flight. The fetch a key runs is shared by every waiter, so it must own its own
 * timeout: a waiter's AbortSignal only stops that waiter from waiting (style: never hand one
 * client's signal to a shared fetch).
 */
export class TokenCache {
  readonly #entries = new Map<string, BearerToken>();
  readonly #inflight = new SingleFlight<BearerToken>();
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor({ maxEntries = 1024, now = Date.now }: TokenCacheOptions = {}) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new TypeError(`Expected maxEntries to be a positive integer, got ${String(maxEntries)}`);
    }
    this.#maxEntries = maxEntries;
    this.#now = now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** A fresh cached token, or undefined. */
  get(key: string): string | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.#now() >= entry.staleAt) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.token;
  }

  /**
   * The cached token for `key`, else the result of `fetch` (one call per key at a time). A token
   * that is already stale when it arrives is still returned, once, to the requests that waited for
   * it: the token service just issued it, but it is not cached.
   */
  async getOrFetch(key: string, fetch: () => Promise<BearerToken>, signal?: AbortSignal): Promise<string> {
    const cached = this.get(key);
    if (cached !== undefined) return cached;
    const pending = this.#inflight.do(key, () =>
      fetch().then((token) => {
        this.#store(key, token);
        return token;
      }),
    );
    // Every waiter may have left (aborted) before a fetch fails: that failure is nobody's to handle.
    pending.catch(() => {});
    return (await abortable(pending, signal)).token;
  }

  /**
   * Forgets `key`, but only while it still holds `token`: a request that failed with an old token
   * must not evict the fresher one a concurrent request just fetched.
   */
  invalidate(key: string, token: string | undefined): void {
    const entry = this.#entries.get(key);
    if (entry !== undefined && (token === undefined || entry.token === token)) this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }

  #store(key: string, token: BearerToken): void {
    const now = this.#now();
    if (now >= token.staleAt) return;
    this.#entries.delete(key);
    if (this.#entries.size >= this.#maxEntries) {
      for (const [k, v] of this.#entries) if (now >= v.staleAt) this.#entries.delete(k);
      // Still full: drop the oldest insertion (Map iterates in insertion order).
      while (this.#entries.size >= this.#maxEntries) {
        const oldest = this.#entries.keys().next().value as string;
        this.#entries.delete(oldest);
      }
    }
    this.#entries.set(key, token);
  }
}

function nonEmptyString(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}
