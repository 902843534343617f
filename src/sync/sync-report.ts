/**
 * @module sync/sync-report
 * What a sync tells as it goes (events, for progress bars, JSON lines or a job's progress) and
 * what it did in the end (the report `--report FILE` writes): one entry per image with its source
 * reference, destination, digest, bytes, blobs fetched and result.
 */

/** ok: copied (something was fetched or linked); skipped: already current, or a dry run; failed: see `error`. */
export type ImageResult = 'ok' | 'skipped' | 'failed';

export interface ImageReport {
  /** `docker.io/library/alpine:3.19`, `quay.io/org/app@sha256:…`; a repository alone when its tags could not be listed. */
  readonly source: string;
  /** The reference a client pulls from the mirror: the source's own name in the cache, else the hosted repository's. */
  readonly destination: string;
  readonly digest: string | null;
  /** Bytes of the image's configs and layers (the platforms copied); null when not known (a dry run of an uncached image). */
  readonly bytes: number | null;
  /** Blobs that came from the upstream in this run (the rest were cached). */
  readonly blobsFetched: number;
  readonly bytesFetched: number;
  /** Referrers copied with it (`referrers: true`). */
  readonly referrers: number;
  readonly result: ImageResult;
  /** Dry run only: whether the destination already holds this digest. */
  readonly current?: boolean;
  readonly error: string | null;
}

export interface SyncTotals {
  readonly images: number;
  readonly ok: number;
  readonly skipped: number;
  readonly failed: number;
  readonly bytes: number;
  readonly blobsFetched: number;
  readonly bytesFetched: number;
}

export interface SyncReport {
  /** `cache` or `<hosted registry>[/<prefix>]`. */
  readonly dest: string;
  readonly dryRun: boolean;
  /** The run was stopped (signal, or the first failure without --keep-going) before every image was tried. */
  readonly stoppedEarly: boolean;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly images: readonly ImageReport[];
  readonly totals: SyncTotals;
}

export type SyncEvent =
  | { readonly event: 'plan'; readonly images: number; readonly failed: number }
  | { readonly event: 'note'; readonly message: string }
  | { readonly event: 'paused'; readonly upstream: string; readonly until: string; readonly reason: string }
  | { readonly event: 'image-started'; readonly index: number; readonly total: number; readonly source: string; readonly destination: string }
  | { readonly event: 'image-progress'; readonly source: string; readonly blobsDone: number; readonly blobsTotal: number; readonly bytesDone: number; readonly bytesTotal: number }
  | ({ readonly event: 'image-done' } & ImageReport)
  | ({ readonly event: 'sync-done'; readonly stoppedEarly: boolean } & SyncTotals);

export function totalsOf(images: readonly ImageReport[]): SyncTotals {
  const count = (r: ImageResult) => images.filter((i) => i.result === r).length;
  return {
    images: images.length,
    ok: count('ok'),
    skipped: count('skipped'),
    failed: count('failed'),
    bytes: images.reduce((n, i) => n + (i.bytes ?? 0), 0),
    blobsFetched: images.reduce((n, i) => n + i.blobsFetched, 0),
    bytesFetched: images.reduce((n, i) => n + i.bytesFetched, 0),
  };
}
