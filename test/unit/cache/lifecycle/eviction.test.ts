/**
 * @module test/unit/cache/eviction
 * The Evictor against a real cache: least recently used blobs go first once usage crosses
 * maxSize, down to the low watermark; blobs unused for maxAge go regardless of the quota; a blob
 * being read or pinned never goes; and whatever needed an evicted blob (its manifests, the
 * indexes above them, their tags, links and hot-cache entries) goes with it, in one step.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { DiskRoom } from '../../../../src/cache/lifecycle/disk-space.ts';
import { Evictor, type EvictorOptions } from '../../../../src/cache/lifecycle/eviction.ts';
import { Pins } from '../../../../src/cache/metadata/pins.ts';
import { UsageMeter } from '../../../../src/cache/metadata/usage.ts';
import { OCI_MANIFEST, openCacheFixture, readBody, type CacheFixture } from '../cache-fixture.ts';
import { withRawDatabase } from '../metadata/raw-database.ts';

const MINUTE = 60_000;

let fx: CacheFixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

function evictor(f: CacheFixture, opts: Partial<EvictorOptions> = {}): Evictor {
  return new Evictor({ metadata: f.metadata, blobs: f.blobs, hot: f.hot, log: f.log, now: f.now, ...opts });
}

/** `n` blobs of `size` bytes, each committed a minute after the one before. */
async function blobsInOrder(f: CacheFixture, n: number, size = 100, name = 'b'): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push(await f.blob(`${name}${i}`, size));
    f.advance(MINUTE);
  }
  return out;
}

const cached = (f: CacheFixture, digests: string[]) => digests.filter((d) => f.metadata.getBlob(d) !== undefined);

/** Moves a blob's last access to the epoch, as no request can (pending hits are flushed first). */
function lastUsedAtZero(f: CacheFixture, digest: string): void {
  f.metadata.flush();
  withRawDatabase(f.paths.database, (db) => db.prepare('UPDATE blobs SET last_access = 0 WHERE digest = ?').run(digest));
}

describe('Evictor: quota', () => {
  it('evicts least recently used blobs first until usage is under the low watermark', async () => {
    fx = await openCacheFixture();
    const all = await blobsInOrder(fx, 12);
    const e = evictor(fx, { maxSize: 1000, lowWatermark: 0.5 });
    expect(e.needed()).toBe(true);
    const report = await e.run();
    expect(report).toMatchObject({ evicted: 7, freedBytes: 700, usage: 500, skippedInUse: 0, skippedPinned: 0 });
    expect(cached(fx, all)).toEqual(all.slice(7));
    for (const d of all.slice(0, 7)) expect(fx.fileExists(d)).toBe(false);
    for (const d of all.slice(7)) expect(fx.fileExists(d)).toBe(true);
    expect(new UsageMeter(fx.metadata).recount()).toMatchObject({ drifted: false, usage: { bytes: 500, blobs: 5 } });
    expect(e.needed()).toBe(false);
  });

  it('counts a recent read, even one not yet flushed, as use', async () => {
    fx = await openCacheFixture();
    const all = await blobsInOrder(fx, 4);
    const oldest = all[0]!;
    const read = await fx.blobs.openCommitted(fx.metadata.getBlob(oldest)!);
    await readBody(read!.body);
    const report = await evictor(fx, { maxSize: 350, lowWatermark: 0.5 }).run();
    expect(report.evicted).toBe(3);
    expect(cached(fx, all)).toEqual([oldest]);
  });

  it('does nothing until usage crosses maxSize, even above the watermark', async () => {
    fx = await openCacheFixture();
    const all = await blobsInOrder(fx, 10);
    const e = evictor(fx, { maxSize: 1000, lowWatermark: 0.5 });
    expect(e.needed()).toBe(false);
    expect(await e.run()).toMatchObject({ evicted: 0, usage: 1000 });
    expect(cached(fx, all)).toHaveLength(10);
  });

  it('has no quota when maxSize is 0', async () => {
    fx = await openCacheFixture();
    await blobsInOrder(fx, 5, 10_000);
    const e = evictor(fx, { maxSize: 0 });
    expect(e.needed()).toBe(false);
    expect((await e.run()).evicted).toBe(0);
  });

  it('refuses limits that make no sense', async () => {
    fx = await openCacheFixture();
    expect(() => evictor(fx!, { maxSize: -1 })).toThrow(/Expected maxSize/);
    expect(() => evictor(fx!, { lowWatermark: 0 })).toThrow(/Expected lowWatermark/);
    expect(() => evictor(fx!, { lowWatermark: 1.5 })).toThrow(/Expected lowWatermark/);
    expect(() => evictor(fx!, { maxAge: Number.NaN })).toThrow(/Expected maxAge/);
  });

  it('on a full disk with no statfs, frees down to the watermark of current usage, even with no quota', async () => {
    fx = await openCacheFixture();
    const all = await blobsInOrder(fx, 10);
    const e = evictor(fx, { maxSize: 0, lowWatermark: 0.75 });
    expect(await e.run({ diskFull: { needed: 0 } })).toMatchObject({ evicted: 3, usage: 700 });
    expect(cached(fx, all)).toEqual(all.slice(3));
  });

  it('runs a disk-full eviction after a quota run already going instead of sharing it', async () => {
    fx = await openCacheFixture();
    await blobsInOrder(fx, 10);
    const e = evictor(fx, { maxSize: 0, lowWatermark: 0.5 });
    const first = e.run();
    const second = e.run({ diskFull: { needed: 0 } });
    expect(second).not.toBe(first);
    expect((await first).evicted).toBe(0);
    expect(await second).toMatchObject({ evicted: 5, usage: 500 });
  });

  it('lets a call made while a disk-full run is queued join the queued run', async () => {
    fx = await openCacheFixture();
    await blobsInOrder(fx, 10);
    const e = evictor(fx, { maxSize: 0, lowWatermark: 0.5 });
    const first = e.run();
    const queued = e.run({ diskFull: { needed: 0 } });
    expect(e.run()).toBe(queued);
    expect((await first).evicted).toBe(0);
    expect(await queued).toMatchObject({ evicted: 5, usage: 500 });
  });

  it('shares one run between concurrent callers', async () => {
    fx = await openCacheFixture();
    await blobsInOrder(fx, 4);
    const e = evictor(fx, { maxSize: 300, lowWatermark: 0.5 });
    const [a, b] = [e.run(), e.run()];
    expect(a).toBe(b);
    expect((await a).evicted).toBe(3);
  });
});

describe('Evictor: what it never evicts', () => {
  it('skips a blob being read, leaving it whole for its reader, and takes the next one', async () => {
    fx = await openCacheFixture();
    const all = await blobsInOrder(fx, 4);
    const oldest = all[0]!;
    const reading = await fx.blobs.openCommitted(fx.metadata.getBlob(oldest)!);
    // The read counts as use: make the blob oldest again so eviction would pick it first.
    lastUsedAtZero(fx, oldest);
    const e = evictor(fx, { maxSize: 350, lowWatermark: 0.6 });
    const report = await e.run();
    expect(report).toMatchObject({ evicted: 2, skippedInUse: 1, usage: 200 });
    expect(cached(fx, all)).toEqual([oldest, all[3]]);
    expect((await readBody(reading!.body)).length).toBe(100);
    // Once the reader is done the blob may go like any other.
    const next = await evictor(fx, { maxSize: 150, lowWatermark: 0.5 }).run();
    expect(next.evicted).toBeGreaterThan(0);
  });

  it('skips pinned images, counting their blobs, and says no run is needed when only pinned blobs are left', async () => {
    fx = await openCacheFixture();
    const [c, l1, l2] = await blobsInOrder(fx, 3);
    const pinnedImage = fx.image({ config: c!, layers: [l1!], repo: 'library/alpine', tag: '3.19' });
    const loose = await fx.blob('loose');
    fx.advance(MINUTE);
    const pins = new Pins({ metadata: fx.metadata, config: ['alpine:3.19'] });
    const pinned = () => pins.pinnedDigests(() => ({ upstream: 'hub', repo: 'library/alpine' }));
    const e = evictor(fx, { maxSize: 150, lowWatermark: 0.5, pinned });
    const report = await e.run();
    expect(report).toMatchObject({ evicted: 2, skippedPinned: 2, usage: 200 });
    expect(cached(fx, [c!, l1!, l2!, loose])).toEqual([c, l1]);
    expect(fx.metadata.getManifest(pinnedImage)).toBeDefined();
    expect(fx.metadata.getTag('hub', 'library/alpine', '3.19')?.digest).toBe(pinnedImage);
    expect(e.needed()).toBe(false);
  });
});

describe('Evictor: consistency', () => {
  it('drops the manifests, indexes, tags, links and hot entries that needed an evicted blob', async () => {
    fx = await openCacheFixture();
    const [layer, config] = await blobsInOrder(fx, 2);
    const keep = await fx.blob('keep');
    const amd = fx.image({ config: config!, layers: [layer!], repo: 'library/app', tag: 'amd' });
    const index = fx.index([amd], { repo: 'library/app', tag: 'latest' });
    const other = fx.image({ config: config!, layers: [keep], repo: 'library/other', tag: 'latest' });
    fx.metadata.putLink('hub', 'library/mirror-of-app', amd);
    for (const m of [amd, index]) fx.hot.setManifest({ digest: m, mediaType: OCI_MANIFEST, bytes: fx.metadata.getManifest(m)!.bytes });
    fx.hot.setTag('hub', 'library/app', 'latest', { digest: index, mediaType: OCI_MANIFEST, fetchedAt: 0 });
    fx.hot.setLink('hub', 'library/app', layer!);
    fx.hot.setLink('hub', 'library/mirror-of-app', amd);

    const report = await evictor(fx, { maxSize: 250, lowWatermark: 0.9 }).run();
    expect(report).toMatchObject({ evicted: 1, manifestsDropped: 2, tagsDropped: 2 });
    expect(fx.metadata.getBlob(layer!)).toBeUndefined();
    expect(fx.metadata.getManifest(amd)).toBeUndefined();
    expect(fx.metadata.getManifest(index)).toBeUndefined();
    expect(fx.metadata.cachedTags('hub', 'library/app')).toEqual([]);
    expect(fx.metadata.hasLink('hub', 'library/app', layer!)).toBe(false);
    expect(fx.metadata.hasLink('hub', 'library/mirror-of-app', amd)).toBe(false);
    expect([...fx.metadata.refs.children(amd), ...fx.metadata.refs.children(index)]).toEqual([]);
    expect(fx.hot.getManifest(amd)).toBeUndefined();
    expect(fx.hot.getManifest(index)).toBeUndefined();
    expect(fx.hot.getTag('hub', 'library/app', 'latest')).toBeUndefined();
    expect(fx.hot.hasLink('hub', 'library/app', layer!)).toBe(false);
    expect(fx.hot.hasLink('hub', 'library/mirror-of-app', amd)).toBe(false);
    // An image that shares only the config with the dropped one is untouched, and so is the config.
    expect(fx.metadata.getManifest(other)).toBeDefined();
    expect(fx.metadata.getTag('hub', 'library/other', 'latest')?.digest).toBe(other);
    expect(fx.metadata.getBlob(config!)).toBeDefined();
  });

  it('leaves a referrer alone when its subject is dropped', async () => {
    fx = await openCacheFixture();
    const [layer, sigLayer] = await blobsInOrder(fx, 2);
    const config = await fx.blob('config');
    const image = fx.image({ config, layers: [layer!] });
    const sig = fx.image({ config, layers: [sigLayer!], subject: image });
    lastUsedAtZero(fx, layer!);
    await evictor(fx, { maxSize: 250, lowWatermark: 0.9 }).run();
    expect(fx.metadata.getManifest(image)).toBeUndefined();
    expect(fx.metadata.getManifest(sig)).toBeDefined();
  });
});

describe('Evictor: maxAge', () => {
  it('evicts blobs unused for maxAge even under the quota, and only those', async () => {
    fx = await openCacheFixture();
    const old = await blobsInOrder(fx, 3);
    fx.advance(60 * MINUTE);
    const recent = await blobsInOrder(fx, 2, 100, 'recent');
    const image = fx.image({ config: recent[0]!, layers: [old[0]!], tag: 'v1' });
    const e = evictor(fx, { maxSize: 1_000_000, maxAge: 30 * MINUTE });
    expect(e.needed()).toBe(true);
    const report = await e.run();
    expect(report).toMatchObject({ evicted: 3, freedBytes: 300 });
    expect(cached(fx, [...old, ...recent])).toEqual(recent);
    expect(fx.metadata.getManifest(image)).toBeUndefined();
    expect(e.needed()).toBe(false);
  });

  it('never evicts by age when maxAge is 0', async () => {
    fx = await openCacheFixture();
    await blobsInOrder(fx, 3);
    fx.advance(365 * 24 * 60 * MINUTE);
    const e = evictor(fx, { maxAge: 0 });
    expect(e.needed()).toBe(false);
    expect((await e.run()).evicted).toBe(0);
  });
});

/** A filesystem of `total` bytes with `free` of them free, recording reserve releases and restores. */
function fakeDisk(free: number, total: number) {
  const calls: string[] = [];
  const disk: DiskRoom = {
    stat: () => ({ free, total }),
    release: async () => {
      calls.push('release');
      return 0;
    },
    restore: async () => {
      calls.push('restore');
      return true;
    },
  };
  return { disk, calls };
}

describe('Evictor: a full disk', () => {
  it('frees what the blob needs plus the watermark gap, measured against the real free space, and no more', async () => {
    fx = await openCacheFixture();
    const all = await blobsInOrder(fx, 10);
    // 2000-byte disk, 150 free, watermark 0.9: a 300-byte blob needs 300 + 200 − 150 = 350 freed.
    const e = evictor(fx, { maxSize: 0, lowWatermark: 0.9, disk: fakeDisk(150, 2000).disk });
    const report = await e.run({ diskFull: { needed: 300 } });
    expect(report).toMatchObject({ evicted: 4, freedBytes: 400, usage: 600, room: { needed: 300, free: 150, toFree: 350, fits: true } });
    expect(cached(fx, all)).toEqual(all.slice(4));
  });

  it('evicts nothing when the disk already has the room', async () => {
    fx = await openCacheFixture();
    await blobsInOrder(fx, 10);
    const e = evictor(fx, { maxSize: 0, lowWatermark: 0.9, disk: fakeDisk(1000, 2000).disk });
    expect(await e.run({ diskFull: { needed: 300 } })).toMatchObject({ evicted: 0, room: { toFree: 0, fits: true } });
  });

  it('lets a second request join the disk-full run going instead of starting another', async () => {
    fx = await openCacheFixture();
    const all = await blobsInOrder(fx, 10);
    const e = evictor(fx, { maxSize: 0, lowWatermark: 0.9, disk: fakeDisk(150, 2000).disk });
    const first = e.run({ diskFull: { needed: 300 } });
    const second = e.run({ diskFull: { needed: 300 } });
    expect(second).toBe(first);
    expect((await second).evicted).toBe(4);
    expect(cached(fx, all)).toHaveLength(6);
  });

  it('raises the need of a queued disk-full run to the largest asked for', async () => {
    fx = await openCacheFixture();
    await blobsInOrder(fx, 10);
    const e = evictor(fx, { maxSize: 0, lowWatermark: 0.9, disk: fakeDisk(150, 2000).disk });
    const quota = e.run();
    const queued = e.run({ diskFull: { needed: 100 } });
    expect(e.run({ diskFull: { needed: 500 } })).toBe(queued);
    await quota;
    expect(await queued).toMatchObject({ room: { needed: 500, toFree: 550 }, evicted: 6 });
  });

  it('never evicts a blob being read to make room', async () => {
    fx = await openCacheFixture();
    const all = await blobsInOrder(fx, 10);
    const open = await fx.blobs.openCommitted(fx.metadata.getBlob(all[0]!)!);
    lastUsedAtZero(fx, all[0]!); // still the least recently used, so the first candidate
    const e = evictor(fx, { maxSize: 0, lowWatermark: 0.9, disk: fakeDisk(150, 2000).disk });
    expect(await e.run({ diskFull: { needed: 300 } })).toMatchObject({ evicted: 4, skippedInUse: 1 });
    expect(cached(fx, all)).toEqual([all[0]!, ...all.slice(5)]);
    await readBody(open!.body);
  });

  it('evicts nothing for a blob larger than all that could be freed', async () => {
    fx = await openCacheFixture();
    const all = await blobsInOrder(fx, 10);
    const e = evictor(fx, { maxSize: 0, lowWatermark: 0.9, disk: fakeDisk(150, 2000).disk });
    expect(await e.run({ diskFull: { needed: 1200 } })).toMatchObject({ evicted: 0, room: { fits: false, toFree: 0 } });
    expect(cached(fx, all)).toHaveLength(10);
  });

  it('evicts nothing for a blob larger than maxSize', async () => {
    fx = await openCacheFixture();
    await blobsInOrder(fx, 10);
    const e = evictor(fx, { maxSize: 800, lowWatermark: 0.9, disk: fakeDisk(150, 1_000_000).disk });
    expect(await e.run({ diskFull: { needed: 900 } })).toMatchObject({ evicted: 0, room: { fits: false } });
  });

  it('deletes the reserve file before evicting and writes it back after', async () => {
    fx = await openCacheFixture();
    await blobsInOrder(fx, 3);
    const { disk, calls } = fakeDisk(0, 2000);
    await evictor(fx, { maxSize: 0, lowWatermark: 0.9, disk }).run({ diskFull: { needed: 0 } });
    expect(calls).toEqual(['release', 'restore']);
  });
});

describe('Evictor: hosted content', () => {
  it('never evicts a blob linked into a hosted repository, nor counts it against maxSize', async () => {
    fx = await openCacheFixture();
    const [pushed, cachedOld, cachedNew] = await blobsInOrder(fx, 3);
    fx.metadata.hosted.putLink('registry.internal', 'team/app', pushed!, 'blob', fx.now());
    const e = evictor(fx, { maxSize: 150, lowWatermark: 0.7 });
    // 300 bytes stored, 200 of them the cache's: over 150, down to 105 takes the oldest cached blob, not the older pushed one.
    const report = await e.run();
    expect(report).toMatchObject({ evicted: 1, usage: 100 });
    expect(cached(fx, [pushed!, cachedOld!, cachedNew!])).toEqual([pushed, cachedNew]);
    expect(e.needed()).toBe(false);
  });

  it('never evicts for maxAge what a hosted manifest references, nor the manifest with it', async () => {
    fx = await openCacheFixture();
    const [config, layer] = await blobsInOrder(fx, 2);
    const image = fx.image({ config: config!, layers: [layer!] });
    fx.metadata.hosted.putLink('registry.internal', 'team/app', image, 'manifest', fx.now());
    fx.advance(60 * MINUTE);
    const report = await evictor(fx, { maxAge: MINUTE }).run();
    expect(report.evicted).toBe(0);
    expect(cached(fx, [config!, layer!])).toHaveLength(2);
    expect(fx.metadata.getManifest(image)).toBeDefined();
  });
});
