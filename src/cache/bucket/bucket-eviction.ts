/**
 * @module cache/bucket/bucket-eviction
 * Keeps the shared bucket under its quota: when the objects listed total more than `maxSize`, the
 * least recently used ones go until the total is at `lowWatermark × maxSize`. "Recently used" is
 * the latest read on any replica (the access map gathered from the cluster) or the commit, whichever
 * is later, so a blob committed and not yet read counts from its commit. Pinned digests stay, and so
 * does any object committed within the grace: a fill may be serving it before any hit is recorded.
 *
 * One replica runs this for the cluster (the owner of the `bucket-evict` task); a run that overlaps
 * another's only deletes what both would, and a delete of a missing object is not an error.
 */
import type { Logger } from '../../util/logger.ts';
import type { BlobBucket, BucketObject } from './blob-bucket.ts';

/** Objects committed this recently are kept: a fill may still be serving one before its first hit is recorded. */
export const BUCKET_EVICTION_GRACE_MS = 10 * 60_000;

export interface BucketEvictorOptions {
  bucket: Pick<BlobBucket, 'listObjects' | 'delete'>;
  /** Bytes; 0 = no quota. */
  maxSize: number;
  /** Fraction of maxSize a run brings the total down to. */
  lowWatermark: number;
  pinned: () => Set<string>;
  /** Per digest, the latest access (epoch ms) any replica knows of; asked only when over quota. */
  access: () => Promise<Map<string, number>>;
  now?: () => number;
  log: Logger;
  /** Told of each object deleted (a replica drops what it indexed of it). */
  onDeleted?: (digest: string) => void;
  graceMs?: number;
}

export interface BucketEvictionReport {
  /** Objects listed. */
  objects: number;
  /** Their total size. */
  bytes: number;
  deleted: number;
  freedBytes: number;
  /** Objects that would have gone but are pinned or inside the grace. */
  kept: number;
  /** Deletes that failed (logged; tried again at the next run). */
  failed: number;
}

export class BucketEvictor {
  readonly #opts: BucketEvictorOptions;
  readonly #now: () => number;
  readonly #log: Logger;
  #maxSize = 0;
  #lowWatermark = 1;

  constructor(opts: BucketEvictorOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log.child({ module: 'bucket-eviction' });
    this.setLimits(opts);
  }

  /** New limits (a config reload); a run under way keeps the target it chose. */
  setLimits({ maxSize, lowWatermark }: { maxSize: number; lowWatermark: number }): void {
    if (!(Number.isSafeInteger(maxSize) && maxSize >= 0)) throw new Error(`Expected maxSize to be a size in bytes (0 = no quota), got '${maxSize}'`);
    if (!(lowWatermark > 0 && lowWatermark <= 1)) throw new Error(`Expected lowWatermark to be a fraction such as 0.9, got '${lowWatermark}'`);
    this.#maxSize = maxSize;
    this.#lowWatermark = lowWatermark;
  }

  async run(): Promise<BucketEvictionReport> {
    const maxSize = this.#maxSize;
    const objects: BucketObject[] = [];
    let bytes = 0;
    for await (const o of this.#opts.bucket.listObjects()) {
      objects.push(o);
      bytes += o.size;
    }
    const report: BucketEvictionReport = { objects: objects.length, bytes, deleted: 0, freedBytes: 0, kept: 0, failed: 0 };
    if (maxSize === 0 || bytes <= maxSize) return report;

    const target = Math.floor(maxSize * this.#lowWatermark);
    const access = await this.#opts.access();
    const pinned = this.#opts.pinned();
    const graceStart = this.#now() - (this.#opts.graceMs ?? BUCKET_EVICTION_GRACE_MS);
    const lastUse = (o: BucketObject) => Math.max(access.get(o.digest) ?? 0, o.lastModified);
    const ranked = objects.map((o) => ({ o, used: lastUse(o) })).sort((a, b) => a.used - b.used || (a.o.digest < b.o.digest ? -1 : 1));
    let total = bytes;
    for (const { o } of ranked) {
      if (total <= target) break;
      if (pinned.has(o.digest) || o.lastModified > graceStart) {
        report.kept++;
        continue;
      }
      try {
        await this.#opts.bucket.delete(o.digest);
      } catch (err) {
        report.failed++;
        this.#log.warn({ digest: o.digest, err: (err as Error).message }, 'could not delete an object from the bucket; the next run tries again');
        continue;
      }
      total -= o.size;
      report.deleted++;
      report.freedBytes += o.size;
      this.#opts.onDeleted?.(o.digest);
    }
    const level = total > target ? 'warn' : 'info';
    this.#log[level]({ ...report, maxSize, target, remaining: total }, total > target ? 'bucket still over its low watermark: the rest is pinned, recent or failed to delete' : 'bucket evicted');
    return report;
  }
}
