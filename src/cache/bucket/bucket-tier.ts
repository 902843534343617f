/**
 * @module cache/bucket/bucket-tier
 * The shared bucket behind each replica's disk (storage.backend s3). The disk stays the tier every
 * client byte is served from (a fill writes it, hits read it); the bucket is where a blob is found
 * when no local disk holds it, and what every replica shares:
 *
 * - a miss is filled from the bucket before any peer or upstream ({@link BucketTier.source}); a
 *   blob the bucket lacks is filled as before and, when its bytes come from the upstream, copied
 *   into the bucket while the fill runs ({@link BucketTier.copy}), reading the fill's temp file as a
 *   client does. The object appears at its key only once its sha256 and size were verified
 *   (cache/bucket/blob-bucket), so no replica ever reads a partial or wrong object;
 * - the bucket unreachable fails fills with 503 (nothing can be shared or kept), while everything
 *   on the disk tier is still served, and shows on /readyz as degraded;
 * - which blobs the bucket holds is indexed in SQLite (cache/metadata/bucket-queries) and rebuilt
 *   from a listing of the bucket when the database is new or was lost.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { Logger } from '../../util/logger.ts';
import type { BlobFill } from '../blobs/blob-fill.ts';
import type { FillSource } from '../blobs/blob-cache.ts';
import { fillStream } from '../blobs/fill-stream.ts';
import type { BucketIndexTotals, BucketQueries } from '../metadata/bucket-queries.ts';
import type { BlobBucket } from './blob-bucket.ts';

/** Rows recorded per transaction while the index is rebuilt from a listing (a listing page is 1,000). */
const REBUILD_BATCH = 1000;

export type CopyResult = 'stored' | 'present' | 'failed';

export interface BucketTierOptions {
  bucket: BlobBucket;
  index: BucketQueries;
  /** Where a committed blob's file is: copies of fills without an announced size read it once committed. */
  blobFile: (hex: string) => string;
  log: Logger;
  now?: () => number;
}

export class BucketTier {
  readonly bucket: BlobBucket;
  readonly #index: BucketQueries;
  readonly #blobFile: (hex: string) => string;
  readonly #log: Logger;
  readonly #now: () => number;
  /** digest → the copy into the bucket in flight (one per digest). */
  readonly #copies = new Map<string, Promise<void>>();
  /** When the bucket last failed to answer, with no answer since; undefined while it answers. */
  #failingSince: number | undefined;
  #lastError = '';
  /** Told when a copy into the bucket ends, for metrics. */
  onCopy: ((result: CopyResult, bytes: number) => void) | undefined;

  constructor(opts: BucketTierOptions) {
    this.bucket = opts.bucket;
    this.#index = opts.index;
    this.#blobFile = opts.blobFile;
    this.#log = opts.log.child({ module: 'bucket' });
    this.#now = opts.now ?? Date.now;
  }

  /**
   * The blob from the bucket as a fill's source, or undefined when the bucket lacks it. Throws
   * UNAVAILABLE when the bucket does not answer: a fill then fails rather than fill a disk the
   * other replicas cannot share.
   */
  async source(digest: string, signal: AbortSignal): Promise<FillSource | undefined> {
    let opened: Awaited<ReturnType<BlobBucket['open']>>;
    try {
      opened = await this.bucket.open(digest, signal);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      this.#failed(err);
      throw err;
    }
    this.#answered();
    if (!opened) {
      // Evicted from the bucket (or never there): a stale index row is dropped.
      this.#index.delete(digest);
      return undefined;
    }
    this.#index.put(digest, opened.size, this.#now());
    return { size: opened.size, mediaType: undefined, body: opened.body, origin: 'bucket' };
  }

  /** The blob's size when this replica knows the bucket holds it (no request made). */
  sizeOf(digest: string): number | undefined {
    return this.#index.size(digest);
  }

  /**
   * Copies a fill whose bytes come from the upstream into the bucket as it runs (BlobCache's
   * onFillStarted). Fills from the bucket are already there; fills from the blob's owner are the
   * owner's to copy. A failed copy costs the bucket a blob, never a client its bytes.
   */
  copy(fill: BlobFill, source: FillSource, outcome: Promise<boolean>): void {
    if (source.origin === 'bucket' || source.origin === 'peer') return;
    const digest = fill.digest.value;
    if (this.#copies.has(digest)) return;
    const size = fill.expectedSize;
    const run = async (): Promise<CopyResult> => {
      let result: { stored: boolean };
      if (size !== undefined) {
        result = await this.bucket.putVerified(digest, size, fillStream(fill.createReader(0)));
      } else {
        // No announced size to declare: copy the committed file once the fill is over.
        if (!(await outcome)) return 'failed';
        const file = this.#blobFile(fill.digest.hex);
        const { size: committed } = await fsp.stat(file);
        result = await this.bucket.putVerified(digest, committed, fs.createReadStream(file));
      }
      this.#answered();
      this.#index.put(digest, size ?? fill.written, this.#now());
      return result.stored ? 'stored' : 'present';
    };
    const copying = run()
      .catch((err: unknown) => {
        // A fill that failed fails its copy too; only the bucket's own failures are news.
        if (fill.state !== 'failed') {
          this.#failed(err);
          this.#log.warn({ digest, err: (err as Error).message }, 'blob not copied into the bucket; the next replica to miss it fetches it again');
        }
        return 'failed' as const;
      })
      .then((result) => this.onCopy?.(result, result === 'failed' ? 0 : (size ?? fill.written)))
      .finally(() => this.#copies.delete(digest));
    this.#copies.set(digest, copying);
  }

  /**
   * Keeps a manifest cached from the upstream in the bucket too, so the bucket holds whole images and
   * replicas find a manifest by digest there. In the background: a failure costs an upstream request later.
   */
  putManifest(digest: string, mediaType: string, bytes: Uint8Array): void {
    this.bucket.putManifest(digest, bytes, mediaType).then(
      () => this.#answered(),
      (err: unknown) => {
        this.#failed(err);
        this.#log.warn({ digest, err: (err as Error).message }, 'manifest not copied into the bucket');
      },
    );
  }

  /** A manifest from the bucket; undefined when it is not there or the bucket does not answer (the upstream is asked then). */
  async manifest(digest: string): Promise<{ bytes: Buffer; mediaType: string } | undefined> {
    try {
      const found = await this.bucket.getManifest(digest);
      this.#answered();
      return found;
    } catch (err) {
      this.#failed(err);
      return undefined;
    }
  }

  /** Copies still running. */
  get copying(): number {
    return this.#copies.size;
  }

  /** Waits up to `timeoutMs` for copies in flight (shutdown); an unfinished one is swept later by gc (abortStale). */
  async settle(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.#copies.values()]), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Why the tier is degraded ('object store unreachable: …'), or undefined while the bucket answers. */
  unreachable(): string | undefined {
    return this.#failingSince === undefined ? undefined : `object store unreachable since ${new Date(this.#failingSince).toISOString()}: ${this.#lastError}`;
  }

  /** What the index says the bucket holds. */
  totals(): BucketIndexTotals {
    return this.#index.totals();
  }

  /** Forgets a blob deleted from the bucket (bucket eviction). */
  forget(digest: string): void {
    this.#index.delete(digest);
  }

  /**
   * Fills an empty index from a listing of the bucket: a new replica, or one whose database was lost,
   * learns what the others stored. Undefined when the index had rows (it is kept by every fill).
   */
  async rebuildIndex(): Promise<BucketIndexTotals | undefined> {
    if (!this.#index.isEmpty()) return undefined;
    let batch: { digest: string; size: number }[] = [];
    const now = this.#now();
    for await (const o of this.bucket.listObjects()) {
      batch.push({ digest: o.digest, size: o.size });
      if (batch.length >= REBUILD_BATCH) {
        this.#index.putMany(batch, now);
        batch = [];
      }
    }
    this.#index.putMany(batch, now);
    this.#answered();
    return this.#index.totals();
  }

  #failed(err: unknown): void {
    this.#failingSince ??= this.#now();
    this.#lastError = (err as Error)?.message ?? String(err);
  }

  #answered(): void {
    this.#failingSince = undefined;
  }
}
