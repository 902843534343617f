/**
 * @module cache/lifecycle/eviction
 * Keeps the blob cache under `storage.maxSize` and drops blobs unused for `storage.maxAge`.
 *
 * Once usage crosses maxSize, blobs go least recently used first (`blobs.last_access`, with
 * pending hits flushed first) until usage is at or below `lowWatermark × maxSize`: the gap
 * between the two means a busy cache evicts in batches, not one blob per commit. Independently,
 * every blob last used before `now − maxAge` goes. 0 turns either limit off.
 *
 * A write that finds the disk full asks for a disk-full run, sized to the need: enough that the
 * filesystem's real free space (statfs) holds the blob that needed room plus the gap of the low
 * watermark, `needed + (1 − lowWatermark) × area − free` (area: maxSize when set, else the disk),
 * and no less than what the quota would ask once that blob is in. A blob larger than everything
 * that could be freed evicts nothing (it is relayed uncached). There is one disk-full run at a
 * time and a second request while one runs joins it: the first run already measured the disk, so
 * a run after it would only empty the cache further.
 *
 * Hosted content (metadata/hosted-queries `holds`: pushed blobs and manifests and what those
 * manifests reference) is neither evicted nor counted: usage against maxSize is the cache's part
 * only, since a hosted registry has a quota of its own and would otherwise make the cache evict
 * everything it holds.
 *
 * Never evicted: a blob being read or filled (BlobCache.inUse) and anything pinned. Evicting a
 * blob takes with it, in one transaction (cache/removal), every manifest that needs it (and the
 * indexes above those, cache/references), the tags pointing at them and the links to all of
 * them, so the next pull re-resolves and refetches instead of being served a manifest whose
 * layers are gone. Referrers of a dropped manifest stay: they never needed it.
 */
import type { Logger } from '../../util/logger.ts';
import type { BlobCache } from '../blobs/blob-cache.ts';
import type { HotCache } from '../hot-cache.ts';
import type { BlobUse } from '../metadata/blob-queries.ts';
import type { Metadata } from '../metadata/metadata.ts';
import { UsageMeter } from '../metadata/usage.ts';
import type { DiskRoom } from './disk-space.ts';
import { ContentRemover } from './removal.ts';

export interface EvictorOptions {
  metadata: Metadata;
  blobs: BlobCache;
  hot: HotCache;
  /** Quota for blob bytes; 0 = none. */
  maxSize?: number;
  /** Fraction of maxSize eviction brings usage down to, in (0, 1]. */
  lowWatermark?: number;
  /** Blobs not used for this many ms are evicted; 0 = never. */
  maxAge?: number;
  /** Digests that must stay (cache/pins `pinnedDigests`), computed once per run. */
  pinned?: () => ReadonlySet<string>;
  log: Logger;
  now?: () => number;
  /** The data directory's filesystem (free space, reserve file); without it a disk-full run frees only the watermark of usage. */
  disk?: DiskRoom;
}

/** A disk-full run: `needed` is the size of the blob that found no room (0 for a metadata write). */
export interface DiskFullRequest {
  needed: number;
}

export interface EvictionReport {
  /** Blobs removed. */
  readonly evicted: number;
  readonly freedBytes: number;
  /** Blob bytes cached after the run, hosted content left out. */
  readonly usage: number;
  /** Blobs that qualified but were being read or filled. */
  readonly skippedInUse: number;
  /** Blobs that qualified but are pinned (or needed by a pinned manifest). */
  readonly skippedPinned: number;
  readonly manifestsDropped: number;
  readonly tagsDropped: number;
  /** For a disk-full run: what it measured and aimed for. */
  readonly room?: {
    readonly needed: number;
    readonly free: number;
    readonly toFree: number;
    /** False when the blob is larger than all that could be freed: nothing was evicted. */
    readonly fits: boolean;
  };
}

/** Running counts of one run; blobs skipped are counted once however often they come up. */
interface Tally {
  evicted: number;
  freedBytes: number;
  manifestsDropped: number;
  tagsDropped: number;
  inUse: Set<string>;
  pinned: Set<string>;
}

type Candidate = BlobUse;

function newTally(): Tally {
  return { evicted: 0, freedBytes: 0, manifestsDropped: 0, tagsDropped: 0, inUse: new Set(), pinned: new Set() };
}

/** Rows read per page while walking blobs in LRU order. */
const PAGE = 256;
/**
 * Blobs removed per transaction: fewer commits for a large eviction, while each synchronous step
 * stays short (about 10 ms on a slow disk) so pulls are not held up behind it.
 */
const BATCH = 64;

export class Evictor {
  readonly #metadata: Metadata;
  readonly #blobs: BlobCache;
  #maxSize: number;
  #lowWatermark: number;
  #maxAge: number;
  readonly #pinned: () => ReadonlySet<string>;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #remover: ContentRemover;
  readonly #usage: UsageMeter;
  readonly #disk: DiskRoom | undefined;
  /** The run in progress, if any; one at a time. */
  #current: { kind: 'quota' | 'diskFull'; done: Promise<EvictionReport> } | undefined;
  /** A disk-full run waiting for a quota run to end; later requests raise its need and join it. */
  #queued: { needed: number; done: Promise<EvictionReport> } | undefined;

  constructor({ metadata, blobs, hot, maxSize = 0, lowWatermark = 0.9, maxAge = 0, pinned = () => new Set(), log, now = Date.now, disk }: EvictorOptions) {
    this.#maxSize = this.#maxAge = this.#lowWatermark = 0;
    this.setLimits({ maxSize, lowWatermark, maxAge });
    this.#metadata = metadata;
    this.#blobs = blobs;
    this.#pinned = pinned;
    this.#log = log.child({ module: 'eviction' });
    this.#now = now;
    this.#remover = new ContentRemover({ metadata, blobs, hot });
    this.#usage = new UsageMeter(metadata);
    this.#disk = disk;
  }

  /** New limits (a config reload); a run under way keeps the target it chose. */
  setLimits({ maxSize, lowWatermark, maxAge }: { maxSize: number; lowWatermark: number; maxAge: number }): void {
    if (!(Number.isSafeInteger(maxSize) && maxSize >= 0)) throw new Error(`Expected maxSize to be a size in bytes (0 = no quota), got '${maxSize}'`);
    if (!(lowWatermark > 0 && lowWatermark <= 1)) throw new Error(`Expected lowWatermark to be a fraction such as 0.9, got '${lowWatermark}'`);
    if (!(Number.isFinite(maxAge) && maxAge >= 0)) throw new Error(`Expected maxAge to be a duration in ms (0 = never), got '${maxAge}'`);
    this.#maxSize = maxSize;
    this.#lowWatermark = lowWatermark;
    this.#maxAge = maxAge;
  }

  /**
   * Whether a run would evict anything: usage is over maxSize or a blob is older than maxAge,
   * and at least one such blob is neither pinned nor in use. (Without the second half, a cache
   * whose pinned content alone exceeds the quota would ask for a run after every commit.)
   */
  needed(): boolean {
    this.#flush();
    // Hosted bytes are summed only once the total crosses maxSize, so the check after a commit stays one row read.
    const overQuota = this.#maxSize > 0 && this.#usage.current().bytes > this.#maxSize && this.#cacheBytes() > this.#maxSize;
    const cutoff = this.#ageCutoff();
    if (!overQuota && (cutoff === undefined || !this.#metadata.blobs.anyUsedBefore(cutoff))) return false;
    const pinned = this.#pinned();
    for (const c of this.#walk(overQuota ? undefined : cutoff)) {
      if (!pinned.has(c.digest) && !this.#blobs.inUse(c.digest)) return true;
    }
    return false;
  }

  /**
   * Evicts what the limits call for, or with `diskFull` what a full disk needs (see the module
   * comment). Calls made while a run is going join it, except a disk-full call during a quota
   * run: that one runs next (the quota run chose its target before the disk filled up), once.
   */
  run({ diskFull }: { diskFull?: DiskFullRequest } = {}): Promise<EvictionReport> {
    if (this.#queued) {
      if (diskFull) this.#queued.needed = Math.max(this.#queued.needed, diskFull.needed);
      return this.#queued.done;
    }
    const current = this.#current;
    if (current && (!diskFull || current.kind === 'diskFull')) return current.done;
    if (!current) return this.#start(diskFull);
    const queued: { needed: number; done: Promise<EvictionReport> } = { needed: diskFull!.needed, done: undefined as never };
    queued.done = current.done
      .catch(() => undefined)
      .then(() => {
        this.#queued = undefined;
        return this.#start({ needed: queued.needed });
      });
    this.#queued = queued;
    return queued.done;
  }

  #start(diskFull: DiskFullRequest | undefined): Promise<EvictionReport> {
    const entry = { kind: diskFull ? ('diskFull' as const) : ('quota' as const), done: undefined as unknown as Promise<EvictionReport> };
    entry.done = (diskFull ? this.#runDiskFull(diskFull.needed) : this.#run()).finally(() => {
      if (this.#current === entry) this.#current = undefined;
    });
    this.#current = entry;
    return entry.done;
  }

  async #run(): Promise<EvictionReport> {
    this.#flush();
    const pinned = this.#pinned();
    const tally = newTally();
    const cutoff = this.#ageCutoff();
    if (cutoff !== undefined) await this.#evictWhile(this.#walk(cutoff), () => true, pinned, tally);
    const hosted = this.#metadata.hosted.heldBlobBytes();
    const before = this.#usage.current().bytes - hosted;
    if (this.#maxSize > 0 && before > this.#maxSize) {
      const target = Math.floor(this.#maxSize * this.#lowWatermark);
      await this.#evictWhile(this.#walk(undefined), (chosen) => this.#usage.current().bytes - hosted - chosen > target, pinned, tally);
    }
    return this.#report(tally, undefined);
  }

  /**
   * Frees what the blob that found no room needs (module comment). The reserve file goes first
   * so SQLite can record the deletions, and comes back once there is room for it.
   */
  async #runDiskFull(needed: number): Promise<EvictionReport> {
    const disk = this.#disk;
    // Measured before the reserve goes: the reserve comes back, so it is not room for the blob.
    const stat = disk?.stat();
    await disk?.release();
    try {
      this.#flush();
      const pinned = this.#pinned();
      const tally = newTally();
      const usage = this.#cacheBytes();
      let evictable = 0;
      for (const c of this.#walk(undefined)) if (!pinned.has(c.digest) && !this.#blobs.inUse(c.digest)) evictable += c.size;
      const free = stat?.free ?? 0;
      // Without a statfs, the old rule: the watermark of current usage.
      const area = stat ? (this.#maxSize > 0 ? Math.min(this.#maxSize, stat.total) : stat.total) : usage;
      const gap = Math.ceil((1 - this.#lowWatermark) * area);
      const quota = this.#maxSize > 0 ? usage + needed - Math.floor(this.#lowWatermark * this.#maxSize) : 0;
      const fits = needed <= free + evictable && (this.#maxSize === 0 || needed <= this.#maxSize);
      const toFree = fits ? Math.max(0, needed + gap - free, quota) : 0;
      if (!fits) this.#log.warn({ needed, free, evictable }, 'disk full: the blob is larger than all that could be freed; relayed uncached, nothing evicted');
      if (toFree > 0) await this.#evictWhile(this.#walk(undefined), (chosen) => tally.freedBytes + chosen < toFree, pinned, tally);
      return this.#report(tally, { needed, free, toFree, fits });
    } finally {
      await disk?.restore();
    }
  }

  #report(tally: Tally, room: EvictionReport['room']): EvictionReport {
    const usage = this.#cacheBytes();
    const report: EvictionReport = {
      evicted: tally.evicted,
      freedBytes: tally.freedBytes,
      usage,
      skippedInUse: tally.inUse.size,
      skippedPinned: tally.pinned.size,
      manifestsDropped: tally.manifestsDropped,
      tagsDropped: tally.tagsDropped,
      ...(room ? { room } : {}),
    };
    if (report.evicted > 0) this.#log.info(report, 'evicted blobs');
    if (this.#maxSize > 0 && usage > this.#maxSize) {
      this.#log.warn({ ...report, maxSize: this.#maxSize }, 'cache still over storage.maxSize: what is left is pinned or in use');
    }
    return report;
  }

  /** Pending hits are written first so LRU order is right; on a full disk the run goes on without them. */
  #flush(): void {
    this.#metadata.tryWrite('access times', () => this.#metadata.flush());
  }

  /**
   * Takes candidates in order while `more(bytes chosen but not removed yet)` holds, skipping
   * pinned and in-use blobs, and removes them BATCH at a time.
   */
  async #evictWhile(candidates: Iterable<Candidate>, more: (chosen: number) => boolean, pinned: ReadonlySet<string>, tally: Tally): Promise<void> {
    let batch: Candidate[] = [];
    let chosen = 0;
    for (const c of candidates) {
      if (!more(chosen)) break;
      if (pinned.has(c.digest)) tally.pinned.add(c.digest);
      else if (this.#blobs.inUse(c.digest)) tally.inUse.add(c.digest);
      else {
        batch.push(c);
        chosen += c.size;
      }
      if (batch.length === BATCH) {
        await this.#evictBatch(batch, pinned, tally);
        batch = [];
        chosen = 0;
      }
    }
    if (batch.length > 0) await this.#evictBatch(batch, pinned, tally);
  }

  /** One transaction for the rows of a batch, then the files. */
  async #evictBatch(batch: Candidate[], pinned: ReadonlySet<string>, tally: Tally): Promise<void> {
    const removal = this.#metadata.transaction(() => {
      const blobs: string[] = [];
      const manifests = new Set<string>();
      for (const { digest } of batch) {
        // Checked in the removing transaction itself: no reader can open the file in between.
        if (this.#blobs.inUse(digest)) {
          tally.inUse.add(digest);
          continue;
        }
        // Pushed since the walk read it, or needed by a hosted manifest: hosted content stays.
        if (this.#metadata.hosted.holds(digest)) continue;
        const dependents = this.#metadata.refs.dependents(digest);
        if ([...dependents].some((m) => this.#metadata.hosted.holds(m))) continue;
        // Pins cover everything below a pinned manifest, so this only trips if refs and pins disagree.
        if ([...dependents].some((m) => pinned.has(m))) {
          tally.pinned.add(digest);
          continue;
        }
        blobs.push(digest);
        for (const m of dependents) manifests.add(m);
      }
      return this.#remover.removeRows({ manifests, blobs });
    });
    tally.evicted += removal.blobs.length;
    tally.freedBytes += removal.bytes;
    tally.manifestsDropped += removal.manifests.length;
    tally.tagsDropped += removal.tags.length;
    await this.#remover.unlink(removal);
  }

  /** Blob bytes under the quota: everything stored but hosted content. */
  #cacheBytes(): number {
    return this.#usage.current().bytes - this.#metadata.hosted.heldBlobBytes();
  }

  #ageCutoff(): number | undefined {
    return this.#maxAge > 0 ? this.#now() - this.#maxAge : undefined;
  }

  /**
   * Blobs in least-recently-used order, optionally only those last used before `before`, hosted
   * content left out (one indexed lookup per blob, against a row read already paid for).
   */
  *#walk(before: number | undefined): Generator<Candidate> {
    const limit = before ?? Number.MAX_SAFE_INTEGER;
    let after: Pick<Candidate, 'lastAccess' | 'digest'> = { lastAccess: Number.MIN_SAFE_INTEGER, digest: '' };
    for (;;) {
      const page = this.#metadata.blobs.leastRecentlyUsed(after, limit, PAGE);
      for (const c of page) if (!this.#metadata.hosted.holds(c.digest)) yield c;
      if (page.length < PAGE) return;
      after = page[page.length - 1]!;
    }
  }
}
