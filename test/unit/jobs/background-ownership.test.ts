/**
 * @module test/unit/jobs/background-ownership
 * Scheduled work in a cluster, on a real cache and job queue with fake timers: the watch list
 * (which prefetches `prefetch.images` at start-up), `sync:` entries and the bucket's upkeep are
 * queued only while this replica owns the task at that tick, asked anew at every tick; local gc
 * runs on every replica; without `owns` (a single node) everything runs. The bucket's eviction
 * and sweep run as 'evict' and 'gc' jobs with a `{ scope: 'bucket' }` payload beside the local ones.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BucketEvictor } from '../../../src/cache/bucket/bucket-eviction.ts';
import { openStorage, type Storage } from '../../../src/cache/storage.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { Background, type BackgroundDeps } from '../../../src/jobs/background.ts';
import type { JobType } from '../../../src/jobs/index.ts';
import type { ListProxy } from '../../../src/proxy/list-proxy.ts';
import type { Prefetcher } from '../../../src/proxy/prefetch.ts';
import type { Route, Router } from '../../../src/proxy/router.ts';
import { silentLogger } from '../../../src/util/logger.ts';

/** The schedules' unit: minutes, so the runner's 1 s poll fires a few hundred times, not tens of thousands. */
const MIN = 60_000;
const IMAGE = 'docker.io/library/alpine:3.19';
const SYNC_FILE = '/nonexistent/images.yaml';
const REFRESH = `refresh ${IMAGE}`;
const SYNC = `sync ${SYNC_FILE}`;
const digest = (c: string) => `sha256:${c.repeat(64)}`;

const router = {
  resolve: () => ({ upstream: { name: 'hub', config: { rateLimitFloor: 0 } }, repo: 'library/alpine', prefix: undefined, via: 'default' }) as unknown as Route,
} as unknown as Router;
const prefetcher = { image: async () => ({ digest: digest('f'), fetched: 0 }) } as unknown as Prefetcher;

describe('Background ownership of scheduled work', () => {
  let dir: string;
  let storage: Storage;
  let background: Background | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-background-'));
    storage = await openStorage({ path: dir, hotCacheBytes: 1024 * 1024, log: silentLogger });
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
  });
  afterEach(async () => {
    await background?.stop(0);
    background = undefined;
    vi.useRealTimers();
    storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  function start(extra: Partial<BackgroundDeps> = {}): Background {
    const config = parseConfig(
      { storage: { path: dir }, prefetch: { images: [{ image: IMAGE, refresh: '1m' }] }, sync: [{ file: SYNC_FILE, interval: '2m' }], gc: { interval: '3m' } },
      { env: {} },
    );
    background = new Background({ config, storage, router, prefetcher, lists: {} as ListProxy, metrics: undefined, log: silentLogger, ...extra });
    background.start();
    return background;
  }

  /** Jobs of `type` recorded so far (any state), oldest first. */
  const jobs = (b: Background, type: JobType) => b.store.list({ type, limit: 1000 }).sort((x, y) => x.id - y.id);

  async function advance(b: Background, ms: number): Promise<void> {
    await vi.advanceTimersByTimeAsync(ms);
    await b.runner.onIdle();
  }

  it('runs every scheduled task on a single node (no owns given)', async () => {
    const b = start();
    await b.runner.onIdle();
    expect(jobs(b, 'refresh')).toHaveLength(1);
    expect(jobs(b, 'sync')).toHaveLength(1);
    await advance(b, 3 * MIN);
    expect(jobs(b, 'refresh')).toHaveLength(4);
    expect(jobs(b, 'gc')).toHaveLength(1);
  });

  it('queues the watch list, sync entries and bucket tasks only on their owner, and local gc everywhere', async () => {
    const asked: string[] = [];
    const b = start({
      owns: (name) => {
        asked.push(name);
        return false;
      },
      bucket: { evictor: new BucketEvictor({ bucket: { listObjects: async function* () {}, delete: async () => {} }, maxSize: 1, lowWatermark: 0.9, pinned: () => new Set(), access: async () => new Map(), log: silentLogger }), sweepStale: async () => ({}) },
    });
    await advance(b, 6 * MIN);
    expect(jobs(b, 'refresh')).toHaveLength(0);
    expect(jobs(b, 'sync')).toHaveLength(0);
    expect(jobs(b, 'evict')).toHaveLength(0);
    expect(jobs(b, 'gc').map((j) => j.payload)).toEqual([null, null]);
    expect(new Set(asked)).toEqual(new Set([REFRESH, SYNC, 'bucket-evict', 'bucket-gc']));
    // Asked at every tick: at start-up and each minute for the watch entry.
    expect(asked.filter((n) => n === REFRESH)).toHaveLength(7);
  });

  it('asks at every tick, so a replica takes over the next tick once it owns the task, and stops once it does not', async () => {
    let owner = 'another replica';
    const b = start({ owns: () => owner === 'this replica' });
    await b.runner.onIdle();
    expect(jobs(b, 'refresh')).toHaveLength(0);
    owner = 'this replica';
    await advance(b, MIN);
    expect(jobs(b, 'refresh')).toHaveLength(1);
    await advance(b, MIN);
    expect(jobs(b, 'refresh')).toHaveLength(2);
    expect(jobs(b, 'sync')).toHaveLength(1);
    owner = 'another replica';
    await advance(b, 4 * MIN);
    expect(jobs(b, 'refresh')).toHaveLength(2);
    expect(jobs(b, 'sync')).toHaveLength(1);
  });

  it('runs the bucket eviction and sweep as evict and gc jobs scoped to the bucket, beside the local gc', async () => {
    const objects = ['a', 'b', 'c'].map((c, i) => ({ digest: digest(c), size: 100, lastModified: i }));
    const deleted: string[] = [];
    let sweeps = 0;
    const evictor = new BucketEvictor({
      bucket: {
        listObjects: async function* () {
          yield* objects.filter((o) => !deleted.includes(o.digest));
        },
        delete: async (d) => void deleted.push(d),
      },
      maxSize: 250,
      lowWatermark: 0.5,
      pinned: () => new Set(),
      access: async () => new Map([[digest('a'), 10]]),
      log: silentLogger,
    });
    const b = start({ owns: () => true, bucket: { evictor, sweepStale: async () => ({ uploadsAborted: ++sweeps, tmpObjectsDeleted: 0 }) } });
    await advance(b, 3 * MIN);
    const evicts = jobs(b, 'evict').filter((j) => j.key === 'bucket-evict');
    expect(evicts.map((j) => [j.payload, j.state])).toEqual([[{ scope: 'bucket' }, 'done']]);
    expect(evicts[0]?.result).toMatchObject({ objects: 3, bytes: 300, deleted: 2, freedBytes: 200 });
    expect(deleted).toEqual([digest('b'), digest('c')]);
    const gcs = jobs(b, 'gc');
    expect(gcs.map((j) => [j.key, j.payload, j.state])).toEqual(
      expect.arrayContaining([
        ['gc', null, 'done'],
        ['bucket-gc', { scope: 'bucket' }, 'done'],
      ]),
    );
    expect(gcs.find((j) => j.key === 'bucket-gc')?.result).toEqual({ uploadsAborted: 1, tmpObjectsDeleted: 0 });
    expect(gcs.find((j) => j.key === 'gc')?.result).toHaveProperty('abandonedUploads');
  });
});
