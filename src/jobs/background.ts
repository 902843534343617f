/**
 * @module jobs/background
 * The background side of the mirror: the durable job queue with its handlers (prefetch,
 * refresh, evict, delete, gc, sync), the schedules that feed it (gc, the watch list, maxAge,
 * `sync:` entries), and the
 * triggers from the request path (a pulled manifest → prefetch; a committed blob over quota or a
 * full disk → evict). Slow work never runs on a client's request.
 *
 * A full disk (a fill's ENOSPC, SQLite's SQLITE_FULL) is logged once until room is back and asks
 * for one disk-full eviction sized to the blob that needed room. It is queued as a job (visible in
 * the admin API) when the job can be recorded, and run directly when it cannot: the eviction frees
 * the reserve file first, so it can write where the job insert could not.
 *
 * A config reload hands over the new router and config ({@link Background.reconfigure}): quotas,
 * pins, prefetch settings and the schedules built from the config (gc, the watch list, maxAge)
 * follow it; the job runner's own settings (jobs.*) stay as they started.
 *
 * In a cluster, scheduled work that is the same on every replica (the watch list, `sync:` entries,
 * the shared bucket's eviction and sweep) is queued only by the task's owner at that tick
 * ({@link BackgroundDeps.owns}); each replica still collects and evicts its own files.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../config/schema.ts';
import { RegistryError } from '../registry/errors.ts';
import { ConfigError } from '../config/config-error.ts';
import type { Storage } from '../cache/storage.ts';
import { Evictor, type EvictionReport } from '../cache/lifecycle/eviction.ts';
import { isDiskFullError } from '../cache/metadata/disk-full-error.ts';
import { ImageDeleter } from '../cache/lifecycle/image-delete.ts';
import { GarbageCollector } from '../cache/lifecycle/gc.ts';
import { Pins, type PinResolver } from '../cache/metadata/pins.ts';
import { parseImageRef, type ImageRef } from '../registry/image-ref.ts';
import type { Router, Route } from '../proxy/router.ts';
import type { Prefetcher, PrefetchProgress } from '../proxy/prefetch.ts';
import type { ListProxy } from '../proxy/list-proxy.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Logger } from '../util/logger.ts';
import { JobDeferred, JobRunner, JobStore, Scheduler, type Job, type JobHandler, type JobType } from './index.ts';
import type { MirrorCore } from '../core.ts';
import type { BucketEvictor, BucketEvictionReport } from '../cache/bucket/bucket-eviction.ts';
import { readSyncPayload, runSyncJob, type SyncPayload } from './sync-job.ts';

export interface PrefetchPayload {
  upstream: string;
  repo: string;
  reference: string;
  platforms?: string[];
}

export interface BackgroundDeps {
  config: Config;
  storage: Storage;
  router: Router;
  prefetcher: Prefetcher;
  lists: ListProxy;
  metrics: Metrics | undefined;
  log: Logger;
  /** The mirror's parts as they are now (after the latest reload), for sync jobs. */
  core?: () => MirrorCore;
  /**
   * Whether this replica runs the cluster-wide scheduled task `name` at this tick (cluster/job-owner);
   * absent on a single node, which owns everything.
   */
  owns?: (name: string) => boolean;
  /** The bucket shared by the replicas: its quota eviction and the sweep of uploads a crashed replica left. */
  bucket?: { evictor: BucketEvictor; sweepStale: () => Promise<unknown> };
}

/** The payload of the bucket's eviction and gc jobs, beside the local ones' (null, or disk-full for evict). */
export interface BucketScope {
  scope: 'bucket';
}

const isBucketScope = (payload: unknown): boolean => (payload as Partial<BucketScope> | null)?.scope === 'bucket';

/** What background work asks an upstream before each batch of requests (upstream/upstream-client.ts answers). */
interface BudgetedUpstream {
  backgroundPausedUntil?(): number | undefined;
}

/** A job waiting for an upstream's budget looks again at least this often: any client pull may bring a fresh report. */
const BUDGET_RECHECK_MS = 60_000;

/** Done jobs are kept this long for the admin API, then pruned. */
const JOB_RETENTION_MS = 7 * 86_400_000;

/**
 * The quota of this replica's own disk: storage.maxSize, or with backend s3 storage.localCache.maxSize
 * (storage.maxSize is then the bucket's, kept by the bucket eviction).
 */
export function diskLimits(config: Config): { maxSize: number; lowWatermark: number; maxAge: number } {
  const { storage } = config;
  return { maxSize: storage.backend === 's3' ? storage.localCache.maxSize : storage.maxSize, lowWatermark: storage.lowWatermark, maxAge: storage.maxAge };
}

export class Background {
  readonly store: JobStore;
  readonly runner: JobRunner;
  /** Replaced by a reload when the config's pins change. */
  pins: Pins;
  readonly evictor: Evictor;
  /** Tasks that live as long as the process (pruning old jobs). */
  readonly #scheduler: Scheduler;
  /** Tasks built from the config; a reload replaces the whole scheduler. */
  #configScheduler: Scheduler;
  #deps: BackgroundDeps;
  #started = false;
  readonly #log: Logger;
  /** Set once a full disk was logged; cleared when an eviction leaves the disk with room. */
  #fullLogged = false;
  /** The largest need reported since the queued disk-full job was recorded (the job's payload has the first). */
  #pendingNeed = 0;

  constructor(deps: BackgroundDeps) {
    const { config, storage, log } = deps;
    this.#deps = deps;
    this.#log = log.child({ module: 'background' });
    this.store = new JobStore(storage.metadata.connectionForJobs(), { maxAttempts: config.jobs.maxAttempts });
    const pinIssues = this.pinIssues(config, deps.router);
    if (pinIssues.length > 0) throw new ConfigError(pinIssues);
    this.pins = new Pins({ metadata: storage.metadata, config: config.pin });
    const parts = { metadata: storage.metadata, blobs: storage.blobs, hot: storage.hot, pinned: () => this.pinnedDigests(), log };
    this.evictor = new Evictor({ ...parts, ...diskLimits(config), disk: storage.disk });
    const deleter = new ImageDeleter(parts);
    const gc = new GarbageCollector(parts);

    const handlers: Record<JobType, JobHandler> = {
      prefetch: (job, ctx) => this.#prefetch(job.payload as PrefetchPayload, ctx),
      refresh: (job, ctx) => this.#refresh((job.payload as { image: string }).image, ctx),
      evict: async (job) => {
        if (isBucketScope(job.payload)) return this.#evictBucket();
        const payload = job.payload as { diskFull?: boolean; needed?: number } | null;
        if (payload?.diskFull !== true) {
          const report = await this.evictor.run();
          this.#countEvictions(report, 'quota');
          return report;
        }
        const needed = Math.max(payload.needed ?? 0, this.#pendingNeed);
        this.#pendingNeed = 0;
        return this.#evictForRoom(needed);
      },
      delete: async (job) => {
        const { route, ref } = this.#resolve((job.payload as { image: string }).image);
        return deleter.deleteImage({ upstream: route.upstream.name, repo: route.repo, reference: (ref.digest ?? ref.tag) as string });
      },
      sync: (job, ctx) => {
        const core = this.#deps.core?.();
        if (!core) throw new RegistryError('UNSUPPORTED', { message: 'sync jobs need the running mirror' });
        return runSyncJob(core, job.payload as SyncPayload, ctx, log.child({ job: job.id }));
      },
      gc: async (job) => {
        if (isBucketScope(job.payload)) return this.#bucket().sweepStale();
        const report = await gc.collectGarbage({ grace: this.#deps.config.gc.grace });
        // Abandoned blob uploads of hosted registries go with the rest of the garbage.
        return { ...report, abandonedUploads: await storage.uploads.collect(this.#deps.config.gc.uploadMaxAge) };
      },
    };
    this.runner = new JobRunner({ store: this.store, handlers, ...config.jobs, log });
    this.#scheduler = new Scheduler({ log });
    this.#configScheduler = new Scheduler({ log });
  }

  start(): void {
    const { config, storage } = this.#deps;
    this.#started = true;
    this.runner.start();
    this.#scheduler.every('prune-jobs', 3_600_000, () => this.store.prune(JOB_RETENTION_MS), { immediately: true });
    this.#scheduleFromConfig(this.#configScheduler, config, undefined);
    storage.blobs.onDiskFull = ({ digest, needed, error }) => this.diskFull({ what: `blob ${digest}`, needed, error });
    storage.metadata.onDiskFull = ({ what, error }) => this.diskFull({ what, needed: 0, error });
    storage.uploads.onDiskFull = (full) => this.diskFull(full);
    storage.uploads.onCommitted = ({ existed }) => {
      if (!existed) this.blobCommitted();
    };
  }

  /**
   * Takes a reloaded config and the router built from it (check {@link pinIssues} first): jobs
   * that start from now on route and evict by them; a job already running finishes as it began.
   */
  reconfigure(config: Config, router: Router): void {
    const before = this.#deps.config;
    this.#deps = { ...this.#deps, config, router };
    if (!isDeepStrictEqual(before.pin, config.pin)) this.pins = new Pins({ metadata: this.#deps.storage.metadata, config: config.pin });
    this.evictor.setLimits(diskLimits(config));
    this.#deps.bucket?.evictor.setLimits(config.storage);
    // Rescheduling restarts every interval: only when what the schedules are built from changed.
    const scheduled = (c: Config) => [c.gc.interval, c.storage.maxAge, diskLimits(c).maxSize, c.prefetch.images, c.sync];
    if (!this.#started || isDeepStrictEqual(scheduled(before), scheduled(config))) return;
    const old = this.#configScheduler;
    this.#configScheduler = new Scheduler({ log: this.#deps.log });
    // Its tasks only queue jobs, so stopping it never waits long; the new one starts at once.
    void old.stop();
    this.#scheduleFromConfig(this.#configScheduler, config, before);
  }

  /**
   * Config pins that are malformed or name a registry no upstream serves stop start-up (and a
   * reload), like any other config mistake: warned about, the pin would protect nothing, and the
   * operator would learn it only when eviction took the image.
   */
  pinIssues(config: Config, router: Router): string[] {
    const issues: string[] = [];
    config.pin.forEach((text, i) => {
      try {
        const ref = parseImageRef(text);
        router.resolve(`${ref.registry}/${ref.repo}`);
      } catch (err) {
        issues.push(`pin[${i}]: ${(err as Error).message} (pin '${text}')`);
      }
    });
    return issues;
  }

  /**
   * gc, the quota and age check, the watch list, sync entries and the bucket's upkeep; `before`: the
   * previous config, whose watch and sync entries do not run again at once. The watch list (which
   * also prefetches `prefetch.images` at start-up), sync entries and the bucket tasks are the
   * cluster's work, queued by their owner only.
   */
  #scheduleFromConfig(s: Scheduler, config: Config, before: Config | undefined): void {
    s.every('gc', config.gc.interval, () => this.enqueue('gc', null, 'gc'));
    if (this.#deps.bucket) {
      const scope: BucketScope = { scope: 'bucket' };
      this.#everyOwned(s, 'bucket-evict', config.gc.interval, () => this.enqueue('evict', scope, 'bucket-evict'));
      this.#everyOwned(s, 'bucket-gc', config.gc.interval, () => this.enqueue('gc', scope, 'bucket-gc'));
    }
    if (config.storage.maxAge > 0 || diskLimits(config).maxSize > 0) {
      // Age-based eviction has no request to trigger it; a quota check is cheap (< 3 ms at 50k blobs).
      const every = Math.min(Math.max(config.storage.maxAge / 10, 60_000), 3_600_000);
      s.every('evict-check', every, () => this.#evictIfNeeded(), { immediately: true });
    }
    const knownSync = new Set(before?.sync.map((e) => JSON.stringify(e)));
    for (const entry of config.sync) {
      const payload: SyncPayload = { name: entry.file, file: entry.file, dest: entry.dest, keepGoing: true };
      this.#everyOwned(s, `sync ${entry.file}`, entry.interval, () => this.enqueue('sync', payload, `sync ${entry.file} → ${entry.dest}`), { immediately: !knownSync.has(JSON.stringify(entry)) });
    }
    const known = new Set(before?.prefetch.images.map((e) => `${e.image} ${e.refresh}`));
    for (const entry of config.prefetch.images) {
      const immediately = !known.has(`${entry.image} ${entry.refresh}`);
      this.#everyOwned(s, `refresh ${entry.image}`, entry.refresh, () => this.enqueue('refresh', { image: entry.image }, `refresh ${entry.image}`), { immediately });
    }
  }

  /**
   * A task of the cluster's: asks at each tick whether this replica owns it, so when the owner dies
   * another replica takes the next tick (at worst one run twice, never none).
   */
  #everyOwned(s: Scheduler, name: string, intervalMs: number, fn: () => unknown, opts?: { immediately?: boolean }): void {
    s.every(
      name,
      intervalMs,
      () => {
        if (this.#deps.owns?.(name) === false) {
          this.#log.debug({ task: name }, 'another replica owns this task');
          return;
        }
        return fn();
      },
      opts,
    );
  }

  /**
   * Queues a sync of an image list (its text, from the admin API); refuses at once, naming every
   * problem, a list or destination that does not check out.
   */
  syncImages(payload: SyncPayload): Job {
    readSyncPayload(payload, this.#deps.config.hosted.map((h) => h.name));
    return this.enqueue('sync', payload);
  }

  /** Queues a job (deduplicated by `key` while one is queued or running) and wakes the runner. */
  enqueue(type: JobType, payload: unknown, key?: string): Job {
    return this.runner.enqueue(type, payload, key === undefined ? {} : { key });
  }

  /** A client pulled a manifest the cache did not have: warm the rest of the image for the next node. */
  prefetchOnPull(route: Route, digest: string): void {
    if (!this.#deps.config.prefetch.onPull) return;
    const payload: PrefetchPayload = { upstream: route.upstream.name, repo: route.repo, reference: digest };
    // Called on a client's request: a job that cannot be recorded must not fail the pull.
    this.#onRequestPath('queueing a prefetch', () => this.enqueue('prefetch', payload, `${payload.upstream}/${payload.repo}@${digest}`));
  }

  /** A blob was committed: start eviction if usage crossed the quota. */
  blobCommitted(): void {
    if (diskLimits(this.#deps.config).maxSize > 0) this.#onRequestPath('queueing a quota eviction', () => this.#evictIfNeeded());
  }

  /**
   * A write found the disk full (`needed`: the size of the blob that found no room, 0 for a
   * metadata write): log it once, and ask for a disk-full eviction as a job, or directly when
   * even the job cannot be recorded.
   */
  diskFull({ what, needed, error }: { what: string; needed: number; error: Error }): void {
    if (!this.#fullLogged) {
      this.#fullLogged = true;
      this.#log.error({ what, needed, err: error.message, free: this.#deps.storage.disk.status().free }, 'disk full: serving what the upstream answers without caching it; evicting to make room');
    }
    this.#pendingNeed = Math.max(this.#pendingNeed, needed);
    try {
      this.enqueue('evict', { diskFull: true, needed }, 'evict-disk-full');
    } catch (err) {
      if (!isDiskFullError(err)) this.#log.error({ err: (err as Error).message }, 'could not queue a disk-full eviction; running it directly');
      const need = this.#pendingNeed;
      this.#pendingNeed = 0;
      this.#evictForRoom(need).catch((e: unknown) => this.#log.error({ err: (e as Error).message }, 'disk-full eviction failed'));
    }
  }

  /**
   * Queues the deletion of a cached image ('registry/repo:tag' or '@digest'). Throws at once (rather
   * than queueing a job that can only fail) when the name is malformed or its registry is not configured.
   */
  deleteImage(image: string): Job {
    this.#resolve(image);
    return this.enqueue('delete', { image });
  }

  /** Queues prefetch jobs for image references ('registry/repo:tag'); throws on a malformed one. */
  prefetchImages(images: readonly string[], platforms?: string[]): Array<{ image: string; job: Job }> {
    const targets = images.map((image) => ({ image, ...this.#resolve(image) }));
    return targets.map(({ image, route, ref }) => {
      const payload: PrefetchPayload = { upstream: route.upstream.name, repo: route.repo, reference: (ref.digest ?? ref.tag) as string, ...(platforms ? { platforms } : {}) };
      return { image, job: this.enqueue('prefetch', payload, `${payload.upstream}/${payload.repo}@${payload.reference}`) };
    });
  }

  /**
   * Adds an admin pin. Refuses at once, as deleteImage and prefetchImages do, a malformed reference
   * or one on a registry this mirror does not serve (NAME_UNKNOWN): such a pin would protect nothing.
   */
  pin(image: string): string {
    this.#pinTarget(parseImageRef(image));
    return this.pins.add(image);
  }

  pinnedDigests(): Set<string> {
    const resolve: PinResolver = (ref) => {
      try {
        return this.#pinTarget(ref);
      } catch {
        return undefined; // an admin pin stored before its registry left the config protects nothing
      }
    };
    return this.pins.pinnedDigests(resolve);
  }

  /** Where a pin's tag is cached; throws NAME_UNKNOWN for a registry this mirror does not serve. */
  #pinTarget(ref: ImageRef): { upstream: string; repo: string } {
    const route = this.#deps.router.resolve(`${ref.registry}/${ref.repo}`);
    return { upstream: route.upstream.name, repo: route.repo };
  }

  async stop(graceMs: number): Promise<void> {
    await Promise.all([this.#scheduler.stop(), this.#configScheduler.stop()]);
    await this.runner.stop(graceMs);
  }

  async #evictForRoom(needed: number): Promise<EvictionReport> {
    const report = await this.evictor.run({ diskFull: { needed } });
    this.#countEvictions(report, 'disk_full');
    if (!this.#deps.storage.disk.status().full) this.#fullLogged = false;
    return report;
  }

  /** Work a client's request triggers but must never fail for: a full disk is reported, anything else logged. */
  #onRequestPath(what: string, work: () => void): void {
    try {
      work();
    } catch (err) {
      if (isDiskFullError(err)) this.diskFull({ what, needed: 0, error: err });
      else this.#log.error({ err: (err as Error).message }, `${what} failed`);
    }
  }

  #bucket(): NonNullable<BackgroundDeps['bucket']> {
    const bucket = this.#deps.bucket;
    if (!bucket) throw new RegistryError('UNSUPPORTED', { message: 'bucket jobs need storage.backend s3' });
    return bucket;
  }

  async #evictBucket(): Promise<BucketEvictionReport> {
    const report = await this.#bucket().evictor.run();
    this.#deps.metrics?.evictions.inc({ reason: 'bucket_quota' }, report.deleted);
    this.#deps.metrics?.evictedBytes.inc({ reason: 'bucket_quota' }, report.freedBytes);
    return report;
  }

  #evictIfNeeded(): void {
    if (this.evictor.needed()) this.enqueue('evict', null, 'evict');
  }

  #countEvictions(report: EvictionReport, reason: string): void {
    this.#deps.metrics?.evictions.inc({ reason }, report.evicted);
    this.#deps.metrics?.evictedBytes.inc({ reason }, report.freedBytes);
    if (report.evicted > 0) this.#log.info({ reason, ...report }, 'evicted');
  }

  /**
   * Background work leaves an upstream's rate-limit budget to client pulls once it is under the
   * floor: the job waits (without spending an attempt) and runs again from the start.
   */
  #checkBudget(route: Route): void {
    const until = (route.upstream as BudgetedUpstream).backgroundPausedUntil?.();
    if (until === undefined) return;
    throw new JobDeferred(
      Math.min(until, Date.now() + BUDGET_RECHECK_MS),
      `upstream ${route.upstream.name}: rate-limit budget under rateLimitFloor (${route.upstream.config.rateLimitFloor}); background work waits`,
    );
  }

  #resolve(image: string): { route: Route; ref: ImageRef } {
    const ref = parseImageRef(image, { allowWildcard: true });
    return { route: this.#deps.router.resolve(ref.pullName), ref };
  }

  #prefetch(p: PrefetchPayload, ctx: { signal: AbortSignal; progress(p: unknown): void }): Promise<PrefetchProgress> {
    const route = this.#deps.router.route(p.upstream, p.repo);
    this.#checkBudget(route);
    return this.#deps.prefetcher.image(route, p.reference, {
      platforms: p.platforms ?? this.#deps.config.prefetch.platforms,
      signal: ctx.signal,
      onProgress: (progress) => ctx.progress(progress),
    });
  }

  /** Watch list: re-resolve the tag (or every tag for ':*') with the upstream and pull what moved. */
  async #refresh(image: string, ctx: { signal: AbortSignal; progress(p: unknown): void }): Promise<unknown> {
    const { route, ref } = this.#resolve(image);
    const platforms = this.#deps.config.prefetch.platforms;
    let tags: string[];
    this.#checkBudget(route);
    if (ref.tag === '*') {
      const list = await this.#deps.lists.tags(route, {});
      tags = (JSON.parse(list.body.toString('utf8')) as { tags?: string[] }).tags ?? [];
    } else {
      tags = [(ref.digest ?? ref.tag) as string];
    }
    const results: Array<{ reference: string; digest: string; fetched: number }> = [];
    for (const reference of tags) {
      ctx.signal.throwIfAborted();
      this.#checkBudget(route);
      const r = await this.#deps.prefetcher.image(route, reference, { platforms, signal: ctx.signal, revalidate: true });
      results.push({ reference, digest: r.digest, fetched: r.fetched });
      ctx.progress({ tagsDone: results.length, tagsTotal: tags.length });
    }
    return { image, results };
  }
}
