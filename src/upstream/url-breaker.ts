/**
 * @module upstream/url-breaker
 * The circuit breaker over an upstream's URLs (`upstreams[].urls`): a URL that failed to answer is
 * skipped for the back-off period and the next one in config order is used; once the back-off is
 * over the URL is tried again first, so the primary takes over as soon as it answers.
 */

export interface UrlState {
  readonly url: string;
  /** `up` = tried in config order; `down` = skipped until `retryAt`. */
  readonly state: 'up' | 'down';
  /** Failures in a row; 0 after an answer. */
  readonly failures: number;
  /** When a `down` URL is tried again, epoch ms; 0 when up. */
  readonly retryAt: number;
  readonly lastError: string | null;
}

interface Entry {
  url: string;
  failures: number;
  openUntil: number;
  lastError: string | null;
}

export class UrlBreaker {
  readonly #entries: Entry[];
  readonly #backoffMs: number;
  readonly #now: () => number;

  constructor(urls: readonly string[], backoffMs: number, now: () => number = Date.now) {
    if (urls.length === 0) throw new TypeError('Expected at least one upstream URL');
    this.#entries = urls.map((url) => ({ url, failures: 0, openUntil: 0, lastError: null }));
    this.#backoffMs = backoffMs;
    this.#now = now;
  }

  /**
   * Indexes to try for one request: every URL not in back-off, in config order. When all are in
   * back-off, only the one that reopens first: a request must try something, and one is enough to
   * learn whether the outage is over.
   */
  order(): number[] {
    const now = this.#now();
    const up = this.#entries.flatMap((e, i) => (e.openUntil <= now ? [i] : []));
    if (up.length > 0) return up;
    let soonest = 0;
    this.#entries.forEach((e, i) => {
      if (e.openUntil < (this.#entries[soonest] as Entry).openUntil) soonest = i;
    });
    return [soonest];
  }

  /** The URL the next request goes to. */
  get active(): string {
    return (this.#entries[this.order()[0] as number] as Entry).url;
  }

  succeeded(index: number): void {
    const e = this.#entries[index] as Entry;
    e.failures = 0;
    e.openUntil = 0;
  }

  failed(index: number, reason: string): void {
    const e = this.#entries[index] as Entry;
    e.failures++;
    e.lastError = reason;
    e.openUntil = this.#now() + this.#backoffMs;
  }

  states(): UrlState[] {
    const now = this.#now();
    return this.#entries.map((e) => {
      const down = e.openUntil > now;
      return { url: e.url, state: down ? 'down' : 'up', failures: e.failures, retryAt: down ? e.openUntil : 0, lastError: e.lastError };
    });
  }
}
