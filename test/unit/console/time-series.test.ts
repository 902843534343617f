/**
 * @module test/unit/console/time-series
 * The traffic history behind the console's charts, on a real metadata database with a hand-moved
 * clock and a hand-fired timer: counts become one row per minute, reads sum them into aligned
 * buckets (hour per minute, day per 15 minutes, week per 2 hours), minutes without a row read as
 * no traffic and unknown size, and rows older than 8 days are pruned.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Metadata } from '../../../src/cache/metadata/metadata.ts';
import { RETENTION_MINUTES, TimeSeries, type Every } from '../../../src/metrics/time-series.ts';

const MINUTE = 60_000;
/** A minute boundary that is also a 2-hour one, so bucket alignment is easy to read. */
const T0 = 29_000_040 * MINUTE;

let dir: string;
let metadata: Metadata;
let now: number;
let usage: { bytes: number; blobs: number };
let timers: Array<{ fn: () => void; ms: number; stopped: boolean }>;

const every: Every = (fn, ms) => {
  const t = { fn, ms, stopped: false };
  timers.push(t);
  return () => {
    t.stopped = true;
  };
};

function series(): TimeSeries {
  return new TimeSeries({ queries: metadata.series, usage: () => usage, now: () => now, every });
}

/** Fires the timers of period `ms` (what setInterval would do when that much time passed). */
function fire(ms: number): void {
  for (const t of timers) if (t.ms === ms && !t.stopped) t.fn();
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-series-'));
  metadata = new Metadata(path.join(dir, 'db.sqlite'), { flushIntervalMs: 3_600_000 });
  now = T0;
  usage = { bytes: 1000, blobs: 3 };
  timers = [];
});

afterEach(async () => {
  metadata.close();
  await rm(dir, { recursive: true, force: true });
});

describe('TimeSeries', () => {
  it('writes one row per minute from the counts since the last write, with the cache size then', () => {
    const s = series();
    s.start();
    s.request('HIT', 100);
    s.request('STALE', 50);
    s.request('MISS', 30);
    s.request('NONE', 999);
    s.upstream(40);
    fire(MINUTE);
    now += MINUTE;
    usage = { bytes: 2000, blobs: 4 };
    s.request('MISS', 7);
    fire(MINUTE);
    const points = s.lastHour().points;
    expect(points).toHaveLength(60);
    const [a, b] = points.slice(-2);
    expect(a).toEqual({ start: T0, servedCacheBytes: 150, servedUpstreamBytes: 30, upstreamBytes: 40, hits: 2, misses: 1, hitRatio: 2 / 3, cacheBytes: 1000, blobs: 3 });
    expect(b).toEqual({ start: T0 + MINUTE, servedCacheBytes: 0, servedUpstreamBytes: 7, upstreamBytes: 0, hits: 0, misses: 1, hitRatio: 0, cacheBytes: 2000, blobs: 4 });
    // Before the mirror ran: no traffic, size unknown.
    expect(points[0]).toMatchObject({ hits: 0, hitRatio: null, cacheBytes: null });
    s.stop();
    expect(timers.every((t) => t.stopped)).toBe(true);
  });

  it('adds a second write within the same minute to the first instead of replacing it', () => {
    const s = series();
    s.request('HIT', 10);
    s.flush();
    s.request('HIT', 5);
    now += 30_000;
    s.flush();
    expect(s.lastHour().points.at(-1)).toMatchObject({ hits: 2, servedCacheBytes: 15 });
  });

  it('sums a day into 15-minute buckets and a week into 2-hour buckets aligned on their length', () => {
    const s = series();
    // One hit in each of the first 20 minutes after T0.
    for (let i = 0; i < 20; i++) {
      s.request('HIT', 1);
      s.flush();
      now += MINUTE;
    }
    now = T0 + 119 * MINUTE;
    const day = s.lastDay();
    expect(day.bucketMs).toBe(15 * MINUTE);
    expect(day.points).toHaveLength(96);
    expect(day.points.at(-1)!.start).toBe(T0 + 105 * MINUTE);
    const byStart = new Map(day.points.map((p) => [p.start, p.hits]));
    expect(byStart.get(T0)).toBe(15);
    expect(byStart.get(T0 + 15 * MINUTE)).toBe(5);
    expect(byStart.get(T0 + 30 * MINUTE)).toBe(0);
    const week = s.lastWeek();
    expect(week.points).toHaveLength(84);
    expect(week.points.at(-1)).toMatchObject({ start: T0, hits: 20 });
    expect(week.points.at(-2)).toMatchObject({ start: T0 - 120 * MINUTE, hits: 0, cacheBytes: null });
  });

  it('prunes rows older than 8 days on start and every hour', () => {
    const s = series();
    const rows = () => metadata.series.buckets(0, Number.MAX_SAFE_INTEGER, 1).map((r) => r.minute);
    s.request('HIT', 1);
    s.flush();
    expect(rows()).toEqual([T0 / MINUTE]);
    now += (RETENTION_MINUTES + 1) * MINUTE;
    s.start();
    expect(rows()).toEqual([]);
    s.request('MISS', 1);
    s.flush();
    const kept = now / MINUTE;
    now += RETENTION_MINUTES * MINUTE;
    fire(3_600_000);
    expect(rows()).toEqual([kept]);
    now += MINUTE;
    fire(3_600_000);
    expect(rows()).toEqual([]);
    s.stop();
  });

  it('keeps the counts when a write fails and writes them with the next minute', () => {
    const errors: unknown[] = [];
    let fail = true;
    const queries = { add: (row: Parameters<typeof metadata.series.add>[0]) => (fail ? (() => { throw new Error('disk full'); })() : metadata.series.add(row)), buckets: metadata.series.buckets.bind(metadata.series), prune: metadata.series.prune.bind(metadata.series) };
    const s = new TimeSeries({ queries: queries as unknown as typeof metadata.series, usage: () => usage, now: () => now, every, onError: (e) => errors.push(e) });
    s.start();
    s.request('HIT', 3);
    fire(MINUTE);
    expect(errors).toHaveLength(1);
    fail = false;
    now += MINUTE;
    fire(MINUTE);
    expect(s.lastHour().points.at(-1)).toMatchObject({ hits: 1, servedCacheBytes: 3 });
  });
});
