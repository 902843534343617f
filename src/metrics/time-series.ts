/**
 * @module metrics/time-series
 * A week of traffic history for the console, kept whether or not Prometheus metrics are enabled:
 * the mirror tells {@link TimeSeries} what each response and each upstream fill moved (the
 * {@link SeriesCounters} hooks, plain additions on the request path), and once a minute the
 * counts since the last write become one row of the `series` table (metadata/series-queries)
 * together with the cache's size. Rows older than 8 days are pruned hourly. Reads sum the rows
 * into the buckets the charts draw: an hour per minute, a day per 15 minutes, a week per 2 hours.
 */
import type { CacheLabel } from './metrics.ts';
import type { SeriesQueries, SeriesRow } from '../cache/metadata/series-queries.ts';

/** What the mirror reports as it serves; cheap enough for every response. */
export interface SeriesCounters {
  /** A response finished: `bytes` written to the client, `cache` its result (HIT, STALE, MISS; NONE is not counted). */
  request(cache: CacheLabel, bytes: number): void;
  /** A fill read `bytes` from an upstream itself (not from a peer replica or the bucket). */
  upstream(bytes: number): void;
}

export interface SeriesPoint {
  /** Start of the bucket, epoch ms. */
  start: number;
  servedCacheBytes: number;
  servedUpstreamBytes: number;
  upstreamBytes: number;
  hits: number;
  misses: number;
  /** hits / (hits + misses); null when the bucket had no request. */
  hitRatio: number | null;
  /** The cache's size in the bucket; null when nothing was recorded then (the mirror was not running). */
  cacheBytes: number | null;
  blobs: number | null;
}

export interface SeriesWindow {
  /** Bucket length, ms. */
  bucketMs: number;
  points: SeriesPoint[];
}

/** Starts `fn` every `ms`; returns what stops it. */
export type Every = (fn: () => void, ms: number) => () => void;

export interface TimeSeriesOptions {
  queries: SeriesQueries;
  /** The cache's blob bytes and count now (one row read: metadata/usage). */
  usage: () => { bytes: number; blobs: number };
  now?: () => number;
  every?: Every;
  /** Told when a write fails (a full disk); the counts are kept for the next minute. */
  onError?: (err: unknown) => void;
}

const MINUTE = 60_000;
/** 8 days: a week's chart plus a day of margin, at most 11,520 rows. */
export const RETENTION_MINUTES = 8 * 1440;
const PRUNE_EVERY_MS = 3_600_000;

const defaultEvery: Every = (fn, ms) => {
  const timer = setInterval(fn, ms);
  timer.unref();
  return () => clearInterval(timer);
};

export class TimeSeries implements SeriesCounters {
  readonly #queries: SeriesQueries;
  readonly #usage: () => { bytes: number; blobs: number };
  readonly #now: () => number;
  readonly #every: Every;
  readonly #onError: (err: unknown) => void;
  #stops: Array<() => void> = [];
  #pending = { servedCacheBytes: 0, servedUpstreamBytes: 0, upstreamBytes: 0, hits: 0, misses: 0 };

  constructor({ queries, usage, now = Date.now, every = defaultEvery, onError = () => {} }: TimeSeriesOptions) {
    this.#queries = queries;
    this.#usage = usage;
    this.#now = now;
    this.#every = every;
    this.#onError = onError;
  }

  /** Starts the minute writes and hourly pruning (timers unref'd: they never keep the process alive). */
  start(): void {
    if (this.#stops.length > 0) return;
    this.#stops = [this.#every(() => this.#safely(() => this.flush()), MINUTE), this.#every(() => this.#safely(() => this.prune()), PRUNE_EVERY_MS)];
    this.#safely(() => this.prune());
  }

  /** Stops the timers and writes what was counted since the last minute. */
  stop(): void {
    for (const stop of this.#stops) stop();
    this.#stops = [];
    this.#safely(() => this.flush());
  }

  request(cache: CacheLabel, bytes: number): void {
    const p = this.#pending;
    if (cache === 'HIT' || cache === 'STALE') {
      p.hits++;
      p.servedCacheBytes += bytes;
    } else if (cache === 'MISS') {
      p.misses++;
      p.servedUpstreamBytes += bytes;
    }
  }

  upstream(bytes: number): void {
    this.#pending.upstreamBytes += bytes;
  }

  /** Adds the counts since the last write to the current minute's row (with the cache's size now). */
  flush(): void {
    const usage = this.#usage();
    const row: SeriesRow = { minute: Math.floor(this.#now() / MINUTE), ...this.#pending, cacheBytes: usage.bytes, blobs: usage.blobs };
    this.#queries.add(row);
    // Cleared only after the write: a failed one (full disk) keeps them for the next minute.
    this.#pending = { servedCacheBytes: 0, servedUpstreamBytes: 0, upstreamBytes: 0, hits: 0, misses: 0 };
  }

  /** Deletes rows older than the retention; returns how many. */
  prune(): number {
    return this.#queries.prune(Math.floor(this.#now() / MINUTE) - RETENTION_MINUTES);
  }

  /** The last 60 minutes, per minute (the current one included, flushed first). */
  lastHour(): SeriesWindow {
    return this.window(1, 60);
  }

  /** The last 24 hours in 15-minute buckets. */
  lastDay(): SeriesWindow {
    return this.window(15, 96);
  }

  /** The last 7 days in 2-hour buckets. */
  lastWeek(): SeriesWindow {
    return this.window(120, 84);
  }

  /**
   * `count` buckets of `bucketMinutes`, aligned on multiples of it and ending with the one that
   * holds the current minute; buckets with no row read as zero traffic and unknown size.
   */
  window(bucketMinutes: number, count: number): SeriesWindow {
    this.#safely(() => this.flush());
    const nowMinute = Math.floor(this.#now() / MINUTE);
    const last = Math.floor(nowMinute / bucketMinutes) * bucketMinutes;
    const first = last - (count - 1) * bucketMinutes;
    const rows = new Map(this.#queries.buckets(first, last + bucketMinutes, bucketMinutes).map((r) => [r.minute, r]));
    const points: SeriesPoint[] = [];
    for (let m = first; m <= last; m += bucketMinutes) {
      const r = rows.get(m);
      const total = r ? r.hits + r.misses : 0;
      points.push({
        start: m * MINUTE,
        servedCacheBytes: r?.servedCacheBytes ?? 0,
        servedUpstreamBytes: r?.servedUpstreamBytes ?? 0,
        upstreamBytes: r?.upstreamBytes ?? 0,
        hits: r?.hits ?? 0,
        misses: r?.misses ?? 0,
        hitRatio: r && total > 0 ? r.hits / total : null,
        cacheBytes: r?.cacheBytes ?? null,
        blobs: r?.blobs ?? null,
      });
    }
    return { bucketMs: bucketMinutes * MINUTE, points };
  }

  #safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#onError(err);
    }
  }
}
