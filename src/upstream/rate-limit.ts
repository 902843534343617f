/**
 * @module upstream/rate-limit
 * An upstream's pull budget as the registry reports it: `RateLimit-Limit` and `RateLimit-Remaining`
 * (Docker Hub: `ratelimit-remaining: 76;w=21600`, a count and its window in seconds). Background
 * work pauses while the remaining count is under the configured floor, so client pulls keep it.
 */

export interface RateLimitSnapshot {
  limit: number | null;
  remaining: number | null;
  /** The window the counts apply to, seconds; null when the registry did not say. */
  windowSeconds: number | null;
  /** When the headers were last seen, epoch ms; 0 = never. */
  observedAt: number;
}

/** A report without a window is trusted this long before background work tries again. */
const DEFAULT_WINDOW_MS = 60_000;

/** `76;w=21600` → { value: 76, window: 21600 }; undefined when the value is not a count. */
export function parseRateLimitValue(text: string | undefined): { value: number; window: number | null } | undefined {
  if (text === undefined) return undefined;
  // Repeated headers arrive joined with ', '; the first one counts.
  const [first = ''] = text.split(',');
  const [count = '', ...params] = first.split(';').map((p) => p.trim());
  if (!/^\d+$/.test(count)) return undefined;
  let window: number | null = null;
  for (const p of params) {
    const m = /^w\s*=\s*(\d+)$/i.exec(p);
    if (m) window = Number(m[1]);
  }
  return { value: Number(count), window };
}

export class RateLimitBudget {
  #snapshot: RateLimitSnapshot = { limit: null, remaining: null, windowSeconds: null, observedAt: 0 };
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Reads the headers of an upstream response (lower-case names); responses without them change nothing. */
  observe(headers: Record<string, string | undefined>): void {
    const remaining = parseRateLimitValue(headers['ratelimit-remaining']);
    if (remaining === undefined) return;
    const limit = parseRateLimitValue(headers['ratelimit-limit']);
    this.#snapshot = {
      limit: limit?.value ?? null,
      remaining: remaining.value,
      windowSeconds: remaining.window ?? limit?.window ?? null,
      observedAt: this.#now(),
    };
  }

  get snapshot(): Readonly<RateLimitSnapshot> {
    return this.#snapshot;
  }

  /**
   * Until when background work should wait (epoch ms), or undefined when it may go on. The pause
   * lasts until a newer report (any client pull brings one) or the end of the reported window.
   */
  pausedUntil(floor: number): number | undefined {
    const { remaining, windowSeconds, observedAt } = this.#snapshot;
    if (floor <= 0 || remaining === null || remaining >= floor) return undefined;
    const until = observedAt + (windowSeconds === null ? DEFAULT_WINDOW_MS : windowSeconds * 1000);
    return until > this.#now() ? until : undefined;
  }
}
