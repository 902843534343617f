/**
 * @module cache/storage
 * Opens the data directory: creates the layout, opens SQLite, cleans up after any crash
 * (temp files, rows without files, files without rows, broken upload sessions) before the first request is served, and
 * keeps the reserve file (cache/lifecycle/disk-space) in `<data>/reserve`. With storage.backend s3
 * the disk is the tier in front of the shared bucket (cache/bucket/bucket-tier).
 */
import fsp from 'node:fs/promises';
import { constants } from 'node:fs';
import type { Logger } from '../util/logger.ts';
import type { NativeAddon } from '../util/native-addon.ts';
import { BlobCache } from './blobs/blob-cache.ts';
import { BlobStore, type ReconcileReport } from './blobs/blob-store.ts';
import type { BucketTier } from './bucket/bucket-tier.ts';
import type { S3Settings } from './bucket/s3-client.ts';
import { createFillWriter } from './blobs/fill-writer.ts';
import { HotCache } from './hot-cache.ts';
import { DiskSpace } from './lifecycle/disk-space.ts';
import { Metadata } from './metadata/metadata.ts';
import { dataPaths, type DataPaths } from './paths.ts';
import { UploadStore } from './uploads/upload-store.ts';

export interface Storage {
  readonly paths: DataPaths;
  readonly metadata: Metadata;
  readonly blobs: BlobCache;
  readonly hot: HotCache;
  /** Blob upload sessions of the push API (hosted repositories), resumable across restarts. */
  readonly uploads: UploadStore;
  readonly reconciled: ReconcileReport;
  /** The data directory's filesystem: free space and the reserve file. */
  readonly disk: DiskSpace;
  /** With storage.backend s3: the shared bucket behind the disk. */
  readonly bucket: BucketTier | undefined;
  /** Undefined when the database answers and the data directory is writable, else why not. */
  check(): Promise<string | undefined>;
  /** What works only in part although the mirror serves: 'disk full' (nothing new is cached). */
  degraded(): string[];
  close(): void;
}

/**
 * `now` is the clock metadata timestamps are taken from (tests move it); fills hash and write
 * through `nativeAddon` when given (server.nativeAddon), else in Node.
 */
export async function openStorage(opts: {
  path: string;
  hotCacheBytes: number;
  log: Logger;
  now?: () => number;
  nativeAddon?: NativeAddon | undefined;
  /** storage.s3 when storage.backend is s3. */
  bucket?: S3Settings | undefined;
}): Promise<Storage> {
  const paths = dataPaths(opts.path);
  const store = new BlobStore(paths);
  await store.init();
  const metadata = new Metadata(paths.database, opts.now ? { now: opts.now } : {});
  const reconciled = await store.reconcile(metadata);
  const uploads = new UploadStore({ paths, store, metadata, log: opts.log, nativeAddon: opts.nativeAddon, ...(opts.now ? { now: opts.now } : {}) });
  const uploadSessions = await uploads.init();
  opts.log.child({ module: 'storage' }).info({ path: paths.root, ...reconciled, uploads: uploadSessions.sessions, uploadsRemoved: uploadSessions.removed }, 'storage ready');
  const disk = new DiskSpace({ root: paths.root, reservePath: paths.reserve });
  if (!(await disk.restore())) opts.log.child({ module: 'storage' }).warn({ path: disk.reservePath, bytes: disk.reserveBytes }, 'no room for the reserve file: the disk is nearly full');
  const addon = opts.nativeAddon;
  const bucket = opts.bucket ? await openBucketTier(opts.bucket, metadata, paths, opts) : undefined;
  const blobs = new BlobCache(store, metadata, opts.log, {
    fillWriter: () => createFillWriter(addon),
    ...(bucket && { onFillStarted: (fill, source, outcome) => bucket.copy(fill, source, outcome) }),
  });
  return {
    paths,
    metadata,
    blobs,
    hot: new HotCache({ maxSize: opts.hotCacheBytes }),
    uploads,
    reconciled,
    disk,
    bucket,
    degraded() {
      const reasons = disk.status().full ? ['disk full'] : [];
      const unreachable = bucket?.unreachable();
      if (unreachable !== undefined) reasons.push(unreachable);
      return reasons;
    },
    async check() {
      try {
        metadata.ping();
      } catch (err) {
        return `database: ${(err as Error).message}`;
      }
      try {
        await fsp.access(paths.tmp, constants.W_OK);
      } catch (err) {
        return `data directory: ${(err as Error).message}`;
      }
      return undefined;
    },
    close() {
      metadata.close();
    },
  };
}

/**
 * The shared bucket's tier. Loaded only with backend s3: evaluating the AWS SDK it brings costs a
 * filesystem-only mirror ~4 MiB of resident memory in the bundle (~23 MiB and 0.1 s run from source).
 */
async function openBucketTier(settings: S3Settings, metadata: Metadata, paths: DataPaths, opts: { log: Logger; now?: (() => number) | undefined }): Promise<BucketTier> {
  const [{ BucketTier }, { BlobBucket }, { createS3Client }] = await Promise.all([
    import('./bucket/bucket-tier.ts'),
    import('./bucket/blob-bucket.ts'),
    import('./bucket/s3-client.ts'),
  ]);
  const now = opts.now ? { now: opts.now } : {};
  return new BucketTier({
    bucket: new BlobBucket({ client: createS3Client(settings), bucket: settings.bucket, prefix: settings.prefix, ...now }),
    index: metadata.bucket,
    blobFile: paths.blobFile,
    log: opts.log,
    ...now,
  });
}
