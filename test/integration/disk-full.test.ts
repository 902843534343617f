/**
 * A full disk (a real one: the data dir is a small tmpfs) must not fail the clients: a blob is
 * relayed whole and verified, a manifest or listing the upstream answered is served unrecorded,
 * never a 500. Eviction is sized to the blob that found no room, runs once, and the next pull of
 * that blob is cached; a blob no eviction could make room for evicts nothing. /readyz and
 * /metrics say the disk is full.
 */
import { closeSync, openSync, readdirSync, statfsSync, writeSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeIf } from '../helpers/tools.ts';
import { hasTool } from '../helpers/tools.ts';
import { sha256 } from '../helpers/pull.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { waitFor } from '../helpers/wait.ts';
import { mountSmallDisk, unmountSmallDisk } from '../helpers/small-disk.ts';
import type { RawConfig } from '../../src/config/schema.ts';

const MiB = 1 << 20;

const probe = mountSmallDisk('1m');
if (probe) unmountSmallDisk(probe);

const free = (dir: string) => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

/** Takes free space with a file outside the cache: all of it, or all but `leave` bytes. */
function fill(dir: string, leave = 0): void {
  const fd = openSync(path.join(dir, 'filler'), 'a');
  const chunk = Buffer.alloc(64 << 10, 1);
  try {
    for (let i = 0; i < 100_000; i++) {
      const room = free(dir) - leave;
      if (room <= 0) return;
      writeSync(fd, chunk, 0, Math.min(chunk.length, room));
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}

async function withMirror(upstream: Upstream, size: string, extra: Partial<RawConfig>, body: (m: TestMirror, disk: string) => Promise<void>): Promise<void> {
  const disk = mountSmallDisk(size);
  if (!disk) throw new Error('could not mount a tmpfs');
  let m: TestMirror | undefined;
  try {
    m = await startTestMirror(mirrorConfig(upstream.url, extra), { dataDir: path.join(disk, 'data') });
    await body(m, disk);
  } finally {
    await m?.stop();
    unmountSmallDisk(disk);
  }
}

async function pull(url: string): Promise<{ status: number; cache: string | null; body: Buffer }> {
  const res = await fetch(url);
  return { status: res.status, cache: res.headers.get('x-cache'), body: Buffer.from(await res.arrayBuffer()) };
}

describeIf(probe !== undefined && hasTool('docker-registry'), 'needs docker-registry and a root user who can mount a tmpfs', 'a disk that fills up', () => {
  let upstream: Upstream;
  beforeAll(async () => {
    upstream = await startUpstream({ largeBytes: 2 * MiB });
  });
  afterAll(async () => {
    await upstream?.stop();
  });

  const layers = (image: string) => upstream.fixtures.image(image).manifest.layers;
  /** Caches the medium image's layers, then the small one's: the medium ones are least recently used. */
  async function cacheSomeBlobs(m: TestMirror): Promise<string[]> {
    const digests = [...layers('medium'), ...layers('small')].map((l) => l.digest);
    for (const [i, d] of digests.entries()) {
      expect((await pull(`${m.url}/v2/${i < 3 ? 'medium' : 'small'}/blobs/${d}`)).status).toBe(200);
      await waitFor(`blob ${d} committed`, () => m.mirror.storage.metadata.getBlob(d), 10_000);
    }
    return digests;
  }

  it('evicts once, just enough for the blob that found no room, and caches it on the next pull', async () => {
    // 8 MiB disk, maxSize 4 MiB at 90%: the watermark gap is 0.4 MiB.
    await withMirror(upstream, '8m', { storage: { maxSize: '4MiB' } } as Partial<RawConfig>, async (m, disk) => {
      const cachedBlobs = await cacheSomeBlobs(m);
      const blob = layers('large')[0]!;
      fill(disk, blob.size - 256 * 1024);
      const url = `${m.url}/v2/large/blobs/${blob.digest}`;
      const results = await Promise.all([pull(url), pull(url), pull(url)]);
      for (const r of results) {
        expect(r.status).toBe(200);
        expect(sha256(r.body)).toBe(blob.digest);
      }
      const diskFullJobs = () => m.mirror.background.store.list({ type: 'evict' }).filter((j) => (j.payload as { diskFull?: boolean } | null)?.diskFull);
      const done = await waitFor('the disk-full eviction to finish', () => diskFullJobs().find((j) => j.state === 'done'));
      expect(diskFullJobs()).toHaveLength(1);
      // The three medium layers (768 KiB) cover 256 KiB short plus the 0.4 MiB gap; the small image stays.
      expect((done.result as { evicted: number }).evicted).toBe(3);
      for (const d of cachedBlobs.slice(3)) expect(m.mirror.storage.metadata.getBlob(d)).toBeDefined();
      expect(readdirSync(m.mirror.storage.paths.tmp)).toEqual([]);

      const again = await pull(url);
      expect(again.status).toBe(200);
      expect(sha256(again.body)).toBe(blob.digest);
      const row = await waitFor('the large blob committed', () => m.mirror.storage.metadata.getBlob(blob.digest), 10_000);
      expect(row.size).toBe(blob.size);
    });
  });

  it('relays a blob no eviction could make room for, evicting nothing', async () => {
    await withMirror(upstream, '2m', {}, async (m) => {
      const cachedBlobs = await cacheSomeBlobs(m);
      const blob = layers('large')[0]!;
      const results = await Promise.all([pull(`${m.url}/v2/large/blobs/${blob.digest}`), pull(`${m.url}/v2/large/blobs/${blob.digest}`)]);
      for (const r of results) {
        expect(r.status).toBe(200);
        expect(sha256(r.body)).toBe(blob.digest);
      }
      const job = await waitFor('the disk-full eviction to finish', () =>
        m.mirror.background.store.list({ type: 'evict' }).find((j) => (j.payload as { diskFull?: boolean } | null)?.diskFull && j.state === 'done'),
      );
      expect(job.result).toMatchObject({ evicted: 0, room: { fits: false } });
      for (const d of cachedBlobs) expect(m.mirror.storage.metadata.getBlob(d)).toBeDefined();
      expect(m.mirror.storage.metadata.getBlob(blob.digest)).toBeUndefined();
      expect(readdirSync(m.mirror.storage.paths.tmp)).toEqual([]);
    });
  });

  it('with no free byte left, serves manifest and tag-list misses, reports the disk full and evicts to make room', async () => {
    await withMirror(upstream, '8m', {}, async (m, disk) => {
      const cachedBlobs = await cacheSomeBlobs(m);
      fill(disk);
      expect(free(disk)).toBe(0);

      const ready = await fetch(`${m.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: 'ready', degraded: ['disk full'] });
      const metrics = await (await fetch(`${m.url}/metrics`)).text();
      expect(metrics).toMatch(/^ocimirror_disk_full 1$/m);
      expect(metrics).toMatch(/^ocimirror_disk_free_bytes 0$/m);

      const manifest = upstream.fixtures.image('small:v1').manifest;
      const res = await fetch(`${m.url}/v2/small/manifests/v1`, { headers: { accept: manifest.mediaType } });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-cache')).toBe('MISS');
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(manifest.digest);
      const tags = await fetch(`${m.url}/v2/small/tags/list`);
      expect(tags.status).toBe(200);
      expect(((await tags.json()) as { tags: string[] }).tags).toContain('v1');

      // The job could not be recorded: the eviction ran directly, freeing the reserve file first.
      await waitFor('cached blobs evicted to make room', () => cachedBlobs.some((d) => m.mirror.storage.metadata.getBlob(d) === undefined), 10_000);
      const next = await fetch(`${m.url}/v2/small/manifests/v2`, { headers: { accept: manifest.mediaType } });
      expect(next.status).toBe(200);
      await next.arrayBuffer();
      expect(m.mirror.storage.metadata.getManifest(upstream.fixtures.image('small:v2').manifest.digest)).toBeDefined();
    });
  });
});
