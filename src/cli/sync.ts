/**
 * @module cli/sync
 * `ocimirror sync FILE`: copies the images a skopeo-sync YAML file lists into the mirror's cache
 * (the default: the next pull is a hit) or into one of its hosted registries
 * (`--dest registry.internal/mirrored`): in-process on the data directory, holding its lock as
 * `gc --offline` does, or with `--url` as a job of a running mirror (the file's text is sent;
 * progress is the job's). Ends with a report (`--report FILE`, JSON) and exit code 1 when any
 * image failed; a bad sync file or --dest is exit code 2.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import { openCore } from '../core.ts';
import { parseDest, SyncDestError } from '../sync/sync-dest.ts';
import { readSyncFile, SyncFileError } from '../sync/sync-file.ts';
import { planSync } from '../sync/sync-plan.ts';
import { runSync } from '../sync/sync-runner.ts';
import { createLogger } from '../util/logger.ts';
import { CliError, EXIT, handled } from './cli-error.ts';
import { lockDataDir } from './data-lock.ts';
import { jsonLines, progressBars } from './sync-progress.ts';
import { AdminClient, mirrorUrl, type JobView } from './admin-client.ts';
import type { SyncReport } from '../sync/sync-report.ts';

interface SyncFlags {
  config?: string;
  data?: string;
  dest?: string;
  dryRun?: boolean;
  keepGoing?: boolean;
  report?: string;
  json?: boolean;
  url?: string;
  token?: string;
}

export function registerSync(program: Command): void {
  program
    .command('sync')
    .description('copy the images of a skopeo-sync YAML file into the cache or a hosted registry (on the data directory; stop the mirror first)')
    .argument('<file>', 'sync file: skopeo sync --src yaml format, plus platforms, referrers, latest and tags-deny per registry')
    .option('-c, --config <file>', 'config file (default: $OCIMIRROR_CONFIG or the bundled one)')
    .option('--data <dir>', 'data directory (overrides storage.path)')
    .option('--dest <dest>', "'cache', or a hosted registry with an optional repository prefix (registry.internal/mirrored)", 'cache')
    .option('--dry-run', 'list what would be copied (digest from a HEAD, whether it is current) and copy nothing')
    .option('--keep-going', 'go on past failed images (exit code 1 at the end)')
    .option('--report <file>', 'write the report (each image: source, destination, digest, bytes, blobs fetched, result, error) as JSON')
    .option('--json', 'one JSON line per event on stdout even on a terminal')
    .option('--url <url>', 'run it as a job of this running mirror (admin API) instead of on the data directory')
    .option('--token <token>', 'admin token for --url (default: $OCIMIRROR_ADMIN_TOKEN)')
    .action(handled(async (file: string, opts: SyncFlags) => {
      let syncFile;
      try {
        syncFile = readSyncFile(file);
      } catch (err) {
        if (err instanceof SyncFileError) throw new CliError(err.message, EXIT.usage, { cause: err });
        throw err;
      }
      if (opts.url !== undefined) return syncRemote(file, opts);
      const config = loadConfig({ file: opts.config ?? (process.env.OCIMIRROR_CONFIG || undefined), overrides: { data: opts.data } });
      let dest;
      try {
        dest = parseDest(opts.dest, config.hosted.map((h) => h.name));
      } catch (err) {
        if (err instanceof SyncDestError) throw new CliError(err.message, EXIT.usage, { cause: err });
        throw err;
      }
      const lock = lockDataDir(config.storage.path);
      try {
        const log = createLogger('warn', process.stderr);
        const core = await openCore(config, log);
        const controller = new AbortController();
        const stop = () => controller.abort(new Error('interrupted'));
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        const display = !opts.json && process.stdout.isTTY && process.stderr.isTTY ? progressBars() : jsonLines();
        try {
          const report = await runSync(core, planSync(syncFile), {
            dest,
            dryRun: opts.dryRun ?? false,
            keepGoing: opts.keepGoing ?? false,
            signal: controller.signal,
            onEvent: (e) => display.event(e),
            log,
          });
          display.stop();
          if (opts.report) writeFileSync(opts.report, `${JSON.stringify(report, null, 2)}\n`);
          if (report.totals.failed > 0 || controller.signal.aborted) process.exitCode = EXIT.jobFailed;
        } finally {
          display.stop();
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          await core.close();
        }
      } finally {
        lock.release();
      }
    }));
}

/** `--url`: the file's text goes to the running mirror as a sync job, followed until it ends. */
async function syncRemote(file: string, opts: SyncFlags): Promise<void> {
  const client = new AdminClient({ url: mirrorUrl(opts.url), token: opts.token ?? process.env.OCIMIRROR_ADMIN_TOKEN });
  const body = { name: file, yaml: readFileSync(file, 'utf8'), dest: opts.dest ?? 'cache', dryRun: opts.dryRun ?? false, keepGoing: opts.keepGoing ?? false };
  const queued = await client.call<JobView>('POST', '/sync', body);
  const line = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
  line({ event: 'queued', job: queued.id, url: mirrorUrl(opts.url) });
  let last = '';
  const job = await client.waitForJob(queued.id, {
    intervalMs: 500,
    onUpdate: (j) => {
      const now = JSON.stringify(j.progress ?? null);
      if (now !== last && j.progress) line({ event: 'progress', job: j.id, ...(j.progress as object) });
      last = now;
    },
  });
  if (job.state === 'failed') throw new CliError(`sync job ${job.id} failed: ${job.lastError ?? 'unknown error'}`, EXIT.jobFailed);
  const report = job.result as SyncReport;
  for (const image of report.images) line({ event: 'image-done', ...image });
  line({ event: 'sync-done', stoppedEarly: report.stoppedEarly, ...report.totals });
  if (opts.report) writeFileSync(opts.report, `${JSON.stringify(report, null, 2)}\n`);
  if (report.totals.failed > 0 || report.stoppedEarly) process.exitCode = EXIT.jobFailed;
}
