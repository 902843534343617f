/**
 * @module auth/failure-limiter
 * Failed authentications per client address: a few are free, then each further failure blocks the
 * address for twice as long as the last (1 s up to 5 min), during which new credentials are refused
 * with 429 unchecked. Guessing passwords then costs hours per thousand tries. A success forgets the
 * address's record.
 */
import { LRUCache } from 'lru-cache';

export interface FailureLimiterOptions {
  /** Failures allowed before the backoff starts. */
  free?: number;
  baseMs?: number;
  maxMs?: number;
  now?: () => number;
}

interface Record_ {
  failures: number;
  blockedUntil: number;
}

export class FailureLimiter {
  readonly #free: number;
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #now: () => number;
  // Bounded so a flood from many addresses cannot grow memory; the oldest records go first.
  readonly #records = new LRUCache<string, Record_>({ max: 10_000 });

  constructor({ free = 5, baseMs = 1000, maxMs = 300_000, now = Date.now }: FailureLimiterOptions = {}) {
    this.#free = free;
    this.#baseMs = baseMs;
    this.#maxMs = maxMs;
    this.#now = now;
  }

  /** Seconds until `client` may try again, or undefined when it may now. */
  blockedFor(client: string): number | undefined {
    const r = this.#records.get(client);
    const left = r ? r.blockedUntil - this.#now() : 0;
    return left > 0 ? Math.ceil(left / 1000) : undefined;
  }

  fail(client: string): void {
    const r = this.#records.get(client) ?? { failures: 0, blockedUntil: 0 };
    r.failures++;
    const over = r.failures - this.#free;
    if (over > 0) r.blockedUntil = this.#now() + Math.min(this.#maxMs, this.#baseMs * 2 ** Math.min(over - 1, 30));
    this.#records.set(client, r);
  }

  succeed(client: string): void {
    this.#records.delete(client);
  }
}
