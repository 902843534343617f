/**
 * @module jobs/sync-job
 * `sync` jobs: an image list (skopeo sync YAML, sync/sync-file) copied into the cache or a hosted
 * registry by sync/sync-runner on the running mirror. They come from `POST /admin/v1/sync` (the
 * file's text, as `ocimirror sync --url` sends it) and from the `sync:` config entries, which name
 * a file read when the job runs, so an edited list applies from its next run. A file or
 * destination that does not check out is a permanent failure naming every problem; images that
 * fail are in the job's result (the sync report), the run goes on past them.
 */
import type { MirrorCore } from '../core.ts';
import { RegistryError } from '../registry/errors.ts';
import { parseSyncText, readSyncFile, SyncFileError, type SyncFile } from '../sync/sync-file.ts';
import { planSync, type SyncPlan } from '../sync/sync-plan.ts';
import { parseDest, SyncDestError, type SyncDest } from '../sync/sync-dest.ts';
import { runSync } from '../sync/sync-runner.ts';
import type { SyncReport } from '../sync/sync-report.ts';
import type { Logger } from '../util/logger.ts';
import type { JobContext } from './job-types.ts';

export interface SyncPayload {
  /** What the list is called in reports and errors: its path, or the name the client gave. */
  name: string;
  /** The list's text (admin API), or… */
  yaml?: string;
  /** …a file on the mirror's side (`sync:` config entries), read when the job runs. */
  file?: string;
  /** `cache` or `<hosted registry>[/<prefix>]`. */
  dest: string;
  dryRun?: boolean;
  /** Go on past failed images (default: yes; the report names each failure). */
  keepGoing?: boolean;
}

/** What the job runs: the plan and destination, or BAD_REQUEST naming every problem. */
export function readSyncPayload(payload: SyncPayload, hosted: readonly string[]): { plan: SyncPlan; dest: SyncDest } {
  try {
    let file: SyncFile;
    if (payload.yaml !== undefined) file = parseSyncText(payload.yaml, payload.name);
    else if (payload.file !== undefined) file = readSyncFile(payload.file);
    else throw new SyncFileError(payload.name, ['expected the sync file\'s text (yaml) or a path (file)']);
    return { plan: planSync(file), dest: parseDest(payload.dest, hosted) };
  } catch (err) {
    if (err instanceof SyncFileError) throw new RegistryError('BAD_REQUEST', { message: err.message, detail: { issues: err.issues }, cause: err });
    if (err instanceof SyncDestError) throw new RegistryError('BAD_REQUEST', { message: err.message, cause: err });
    throw err;
  }
}

export interface SyncJobProgress {
  imagesTotal: number;
  imagesDone: number;
  failed: number;
  current: string | null;
  bytesDone: number;
}

export async function runSyncJob(core: MirrorCore, payload: SyncPayload, ctx: JobContext, log: Logger): Promise<SyncReport> {
  const { plan, dest } = readSyncPayload(payload, core.config.hosted.map((h) => h.name));
  const progress: SyncJobProgress = { imagesTotal: 0, imagesDone: 0, failed: 0, current: null, bytesDone: 0 };
  return runSync(core, plan, {
    dest,
    dryRun: payload.dryRun ?? false,
    keepGoing: payload.keepGoing ?? true,
    signal: ctx.signal,
    log,
    onEvent: (e) => {
      if (e.event === 'plan') progress.imagesTotal = e.images;
      else if (e.event === 'image-started') progress.current = e.source;
      else if (e.event === 'image-done') {
        progress.imagesDone++;
        progress.bytesDone += e.bytes ?? 0;
        if (e.result === 'failed') progress.failed++;
        progress.current = null;
      } else return;
      ctx.progress({ ...progress });
    },
  });
}
