/**
 * @module test/unit/cache/bucket-eviction
 * Eviction from the shared bucket over an in-memory object list and a clock the test sets: under
 * the quota nothing is deleted (and no replica is asked); over it, the least recently used objects
 * by the cluster's access map (or their commit when later) go until the total is at the low
 * watermark; pinned objects and objects inside the grace stay; a failed delete is skipped.
 */
import { describe, expect, it } from 'vitest';
import { BucketEvictor, type BucketEvictorOptions } from '../../../src/cache/bucket/bucket-eviction.ts';
import type { BucketObject } from '../../../src/cache/bucket/blob-bucket.ts';
import { silentLogger } from '../../../src/util/logger.ts';

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;
const digest = (name: string) => `sha256:${name.padEnd(64, '0')}`;

/** An in-memory bucket: what listObjects yields and what delete removes. */
function fakeBucket(objects: BucketObject[], failing = new Set<string>()) {
  const stored = new Map(objects.map((o) => [o.digest, o]));
  const deleted: string[] = [];
  return {
    deleted,
    stored,
    bucket: {
      async *listObjects() {
        for (const o of [...stored.values()]) yield o;
      },
      async delete(d: string) {
        if (failing.has(d)) throw new Error('object store: DELETE failed (HTTP 503)');
        stored.delete(d);
        deleted.push(d);
      },
    } satisfies BucketEvictorOptions['bucket'],
  };
}

/** Objects a..f of 100 bytes each, committed a day before now. */
const objects = (names = ['a', 'b', 'c', 'd', 'e', 'f']) => names.map((n) => ({ digest: digest(n), size: 100, lastModified: T0 - 24 * HOUR }));

function evictor(bucket: BucketEvictorOptions['bucket'], opts: Partial<BucketEvictorOptions> & { accessed?: Record<string, number> } = {}) {
  let asked = 0;
  const accessed = new Map(Object.entries(opts.accessed ?? {}).map(([n, at]) => [digest(n), at]));
  const gone: string[] = [];
  const e = new BucketEvictor({
    bucket,
    maxSize: 500,
    lowWatermark: 0.6,
    pinned: () => new Set(),
    access: async () => {
      asked++;
      return accessed;
    },
    now: () => T0,
    log: silentLogger,
    onDeleted: (d) => gone.push(d),
    ...opts,
  });
  return { e, asked: () => asked, gone };
}

describe('BucketEvictor', () => {
  it('deletes nothing and asks no replica while the bucket is within its quota', async () => {
    const fake = fakeBucket(objects(['a', 'b', 'c', 'd', 'e']));
    const { e, asked } = evictor(fake.bucket);
    expect(await e.run()).toMatchObject({ objects: 5, bytes: 500, deleted: 0, freedBytes: 0 });
    expect(fake.deleted).toEqual([]);
    expect(asked()).toBe(0);
  });

  it('deletes nothing without a quota', async () => {
    const fake = fakeBucket(objects());
    const { e } = evictor(fake.bucket, { maxSize: 0 });
    expect(await e.run()).toMatchObject({ objects: 6, bytes: 600, deleted: 0 });
  });

  it('deletes the least recently used objects across replicas until the total is at the low watermark', async () => {
    const fake = fakeBucket(objects());
    // Hits as merged from every replica: f and d were read lately, a and c long ago; b and e never.
    const { e, gone } = evictor(fake.bucket, { accessed: { a: T0 - 20 * HOUR, c: T0 - 2 * HOUR, d: T0 - HOUR, f: T0 - 10 * HOUR } });
    const report = await e.run();
    // 600 bytes over a quota of 500: down to 300 (0.6 × 500), three objects. b and e count from
    // their commit (a day ago), then a (20 h) — c (2 h), d and f stay.
    expect(report).toMatchObject({ objects: 6, bytes: 600, deleted: 3, freedBytes: 300, failed: 0 });
    expect(fake.deleted).toEqual([digest('b'), digest('e'), digest('a')]);
    expect(gone).toEqual(fake.deleted);
    expect([...fake.stored.keys()].sort()).toEqual([digest('c'), digest('d'), digest('f')]);
  });

  it('counts an object from its commit when that is later than any recorded hit', async () => {
    const list = objects(['a', 'b', 'c', 'd', 'e', 'f']);
    // a was read long ago but committed again (another replica refilled it) an hour ago.
    list[0]!.lastModified = T0 - HOUR;
    const fake = fakeBucket(list);
    const { e } = evictor(fake.bucket, { lowWatermark: 0.9, accessed: { a: T0 - 23 * HOUR, b: T0 - 2 * HOUR, c: T0 - 3 * HOUR, d: T0 - 4 * HOUR, e: T0 - 5 * HOUR, f: T0 - 6 * HOUR } });
    await e.run();
    expect(fake.deleted).toEqual([digest('f'), digest('e')]);
  });

  it('keeps pinned objects and objects committed within the grace, and goes on with the next ones', async () => {
    const list = objects();
    list[1]!.lastModified = T0 - 5 * 60_000; // b: committed 5 minutes ago, a fill may be serving it
    const fake = fakeBucket(list);
    // A low watermark of 100 bytes: everything but a (pinned, the least recent) and b would go.
    const { e } = evictor(fake.bucket, { lowWatermark: 0.2, pinned: () => new Set([digest('a')]), accessed: { c: T0 - 20 * HOUR, d: T0 - 3 * HOUR, e: T0 - 2 * HOUR, f: T0 - HOUR } });
    const report = await e.run();
    expect(fake.deleted).toEqual([digest('c'), digest('d'), digest('e'), digest('f')]);
    expect(report).toMatchObject({ deleted: 4, freedBytes: 400, kept: 2 });
    expect(fake.stored.has(digest('a')) && fake.stored.has(digest('b'))).toBe(true);
  });

  it('stops short of the watermark when only pinned or recent objects are left', async () => {
    const fake = fakeBucket(objects());
    const { e } = evictor(fake.bucket, { pinned: () => new Set(['b', 'c', 'd', 'e', 'f'].map(digest)) });
    expect(await e.run()).toMatchObject({ deleted: 1, freedBytes: 100, kept: 5 });
    expect(fake.deleted).toEqual([digest('a')]);
  });

  it('skips an object whose delete fails and deletes the next one instead', async () => {
    const fake = fakeBucket(objects(), new Set([digest('a')]));
    const { e } = evictor(fake.bucket, { accessed: { a: T0 - 23 * HOUR, b: T0 - 5 * HOUR, c: T0 - 4 * HOUR, d: T0 - 3 * HOUR, e: T0 - 2 * HOUR, f: T0 - HOUR } });
    expect(await e.run()).toMatchObject({ deleted: 3, failed: 1, freedBytes: 300 });
    expect(fake.deleted).toEqual([digest('b'), digest('c'), digest('d')]);
  });

  it('uses new limits from the next run', async () => {
    const fake = fakeBucket(objects());
    const { e } = evictor(fake.bucket, { maxSize: 1000 });
    expect((await e.run()).deleted).toBe(0);
    e.setLimits({ maxSize: 500, lowWatermark: 0.8 });
    expect((await e.run()).deleted).toBe(2);
    expect(() => e.setLimits({ maxSize: 500, lowWatermark: 0 })).toThrow(/lowWatermark/);
  });
});
