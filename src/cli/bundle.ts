/**
 * @module cli/bundle
 * `ocimirror export` and `ocimirror import`: carry images into an air-gapped site as OCI image
 * layouts (bundle/). Both run in-process on a data directory no mirror is using (they take its
 * lock, as `gc --offline` does), or with `--url` against a running mirror's admin API, the
 * bundle streamed over HTTP (cli/bundle-remote); the work itself is bundle/bundle-export and
 * bundle-import, which the admin API calls as well. Progress goes to stderr: a bar on a terminal, else one JSON
 * line per image and blob; the summary is one JSON line on stdout.
 */
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { loadConfig } from '../config/load.ts';
import { formatBytes, parseSize } from '../config/units.ts';
import { openCore, type MirrorCore } from '../core.ts';
import { RegistryError } from '../registry/errors.ts';
import { createLogger } from '../util/logger.ts';
import { BundleError } from '../bundle/bundle-error.ts';
import { exportBundle, type BundleProgress } from '../bundle/bundle-export.ts';
import { importBundle } from '../bundle/bundle-import.ts';
import type { Compression } from '../bundle/compression.ts';
import { CliError, EXIT, handled } from './cli-error.ts';
import { lockDataDir } from './data-lock.ts';
import { readSyncFile } from '../sync/sync-file.ts';
import { planSync, type SyncPlan } from '../sync/sync-plan.ts';
import { runSync } from '../sync/sync-runner.ts';
import { AdminClient, mirrorUrl } from './admin-client.ts';
import { exportRemote, importRemote, syncedRemote } from './bundle-remote.ts';

interface CommonOptions {
  config?: string;
  data?: string;
  url?: string;
  token?: string;
}

/** The images a sync file names, synced into the cache: each as its full name at the digest synced. */
async function syncedImages(core: MirrorCore, plan: SyncPlan, file: string): Promise<string[]> {
  const report = await runSync(core, plan, { dest: { kind: 'cache' } });
  const failed = report.images.filter((i) => i.result === 'failed');
  if (failed.length > 0) {
    throw new CliError(`export --sync ${file}: ${failed.length} image(s) could not be synced: ${failed.map((i) => `${i.source}: ${i.error ?? 'failed'}`).join('; ')}`, EXIT.jobFailed);
  }
  return report.images.map((i) => i.source);
}

interface ExportFlags extends CommonOptions {
  output: string;
  format?: string;
  compress?: string;
  maxSize?: string;
  since?: string;
  platform?: string[];
  sync?: string;
}

interface ImportFlags extends CommonOptions {
  dest?: string;
  baseName?: string;
}

export function registerBundle(program: Command): void {
  program
    .command('export')
    .description('write images as an OCI image layout (tar, tar.gz, tar.zst, volumes or a directory) for an air-gapped site')
    .argument('[images...]', 'full image names: docker.io/library/alpine:3.19, registry.example/app@sha256:...')
    .option('--sync <file>', 'also export the images of a sync file (skopeo sync YAML), synced into the cache first')
    .requiredOption('-o, --output <path>', 'bundle.tar, bundle.tar.gz, bundle.tar.zst, or DIR/ for a directory')
    .option('--format <tar|dir>', 'output format (default: dir when the output ends with /, else tar)')
    .option('--compress <none|gzip|zstd>', 'compression of the tar (default: from the file name; zstd needs the zstd program)')
    .option('--max-size <size>', 'split the tar into volumes of at most this size (4GiB): NAME.000, NAME.001, ... and NAME.volumes.json')
    .option('--since <file>', 'an earlier bundle or its index.json: leave out the blobs it carried (import it first)')
    .option('--platform <os/arch...>', 'platforms of an index to export (repeatable; default: all)')
    .option('-c, --config <file>', 'config file (default: $OCIMIRROR_CONFIG or the bundled one)')
    .option('--data <dir>', 'data directory (overrides storage.path)')
    .option('--url <url>', 'export from this running mirror (admin API); the bundle is written here')
    .option('--token <token>', 'admin token for --url (default: $OCIMIRROR_ADMIN_TOKEN)')
    .action(handled(async (named: string[], flags: ExportFlags) => {
      const plan = flags.sync === undefined ? undefined : planSync(readSyncFile(flags.sync));
      if (named.length === 0 && plan === undefined) throw new CliError('export: name at least one image, or --sync FILE', EXIT.usage);
      const format = flags.format === undefined ? undefined : oneOf(flags.format, ['tar', 'dir'] as const, '--format');
      const compress = flags.compress === undefined ? undefined : oneOf(flags.compress, ['none', 'gzip', 'zstd'] as const, '--compress');
      let maxSize: number | undefined;
      if (flags.maxSize !== undefined) {
        maxSize = parseSize(flags.maxSize);
        if (maxSize === undefined || maxSize <= 0) throw new CliError(`--max-size '${flags.maxSize}' is not a size (e.g. 4GiB, 700MiB)`, EXIT.usage);
      }
      const progress = reporter('export');
      if (flags.url !== undefined) {
        if (format === 'dir' || flags.output.endsWith('/')) throw new CliError('export --url writes a tar (or volumes): a directory output is for in-process exports', EXIT.usage);
        const client = adminClient(flags);
        const summary = await remote(async () => {
          const synced = flags.sync === undefined ? [] : await syncedRemote(client, flags.sync);
          return exportRemote(client, [...named, ...synced], { output: flags.output, compress: compress as Compression | undefined, maxSize, since: flags.since, platforms: flags.platform ?? [], onProgress: progress.event, onWarning: warn });
        }).finally(progress.stop);
        process.stdout.write(`${JSON.stringify({ event: 'summary', command: 'export', ...round(summary) })}\n`);
        return;
      }
      const summary = await withCore(flags, async (core) => {
        // A sync file's images are resolved (regexes, semver ranges) and brought into the cache the
        // way `ocimirror sync` does, then exported by the digests the sync found.
        const synced = plan === undefined ? [] : await syncedImages(core, plan, flags.sync as string);
        const images = [...named, ...synced];
        return exportBundle(core, images, { output: flags.output, format, compress: compress as Compression | undefined, maxSize, since: flags.since, platforms: flags.platform ?? [], onProgress: progress.event, onWarning: warn });
      }).finally(progress.stop);
      process.stdout.write(`${JSON.stringify({ event: 'summary', command: 'export', ...round(summary) })}\n`);
    }));

  program
    .command('import')
    .description('verify and import an OCI image layout (tar, tar.gz, tar.zst, volumes or a directory) into the cache or a hosted registry')
    .argument('<bundle>', 'bundle.tar[.gz|.zst], a directory, the first volume or the volume manifest')
    .option('--dest <cache|registry[/prefix]>', 'cache (default): under each image\'s original name; or a hosted registry[/prefix]')
    .option('--base-name <registry/repo>', 'the name for images whose ref.name is only a tag (as `oci:DIR:TAG` writes)')
    .option('-c, --config <file>', 'config file (default: $OCIMIRROR_CONFIG or the bundled one)')
    .option('--data <dir>', 'data directory (overrides storage.path)')
    .option('--url <url>', 'import into this running mirror (admin API): the bundle is streamed to it')
    .option('--token <token>', 'admin token for --url (default: $OCIMIRROR_ADMIN_TOKEN)')
    .action(handled(async (source: string, flags: ImportFlags) => {
      const progress = reporter('import');
      if (flags.url !== undefined) {
        const client = adminClient(flags);
        const summary = await remote(() => importRemote(client, source, { dest: flags.dest, baseName: flags.baseName, onProgress: progress.event, onWarning: warn })).finally(progress.stop);
        process.stdout.write(`${JSON.stringify({ event: 'summary', command: 'import', ...round(summary) })}\n`);
        return;
      }
      const summary = await withCore(flags, (core) => importBundle(core, source, { dest: flags.dest, baseName: flags.baseName, onProgress: progress.event, onWarning: warn })).finally(progress.stop);
      process.stdout.write(`${JSON.stringify({ event: 'summary', command: 'import', ...round(summary) })}\n`);
    }));
}

function oneOf<T extends string>(value: string, allowed: readonly T[], flag: string): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new CliError(`${flag} '${value}' must be one of ${allowed.join(', ')}`, EXIT.usage);
}

function warn(message: string): void {
  process.stderr.write(`ocimirror: warning: ${message}\n`);
}

function adminClient(flags: CommonOptions): AdminClient {
  return new AdminClient({ url: mirrorUrl(flags.url), token: flags.token ?? process.env.OCIMIRROR_ADMIN_TOKEN });
}

/** Runs a --url command; this side's bundle failures (a bad --since file, a damaged volume) become one line. */
async function remote<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof BundleError) throw new CliError(err.message, err.code === 'BUNDLE_USAGE' ? EXIT.usage : EXIT.refused, { cause: err });
    throw err;
  }
}

/** Opens the data directory under its lock, runs `fn`, closes; bundle failures become one line and exit 5 (usage: 2). */
async function withCore<T>(flags: CommonOptions, fn: (core: MirrorCore) => Promise<T>): Promise<T> {
  const config = loadConfig({ file: flags.config ?? (process.env.OCIMIRROR_CONFIG || undefined), overrides: { data: flags.data } });
  const lock = lockDataDir(config.storage.path);
  try {
    const core = await openCore(config, createLogger('warn'));
    try {
      return await fn(core);
    } finally {
      await core.close();
    }
  } catch (err) {
    if (err instanceof BundleError) throw new CliError(err.message, err.code === 'BUNDLE_USAGE' ? EXIT.usage : EXIT.refused, { cause: err });
    if (err instanceof RegistryError) throw new CliError(err.message, err.status === 400 ? EXIT.usage : EXIT.refused, { cause: err });
    throw err;
  } finally {
    lock.release();
  }
}

function round<T extends object>(summary: T): T {
  const out = { ...summary } as Record<string, unknown>;
  for (const key of ['seconds', 'mibPerSecond']) if (typeof out[key] === 'number') out[key] = Math.round((out[key] as number) * 100) / 100;
  return out as T;
}

/** A bar on a terminal; otherwise one JSON line per image/blob event (byte ticks are for the bar only). */
function reporter(command: 'export' | 'import'): { event: (p: BundleProgress) => void; stop: () => void } {
  if (!process.stderr.isTTY) {
    return {
      event: (p) => {
        if (p.event !== 'bytes') process.stderr.write(`${JSON.stringify({ command, ...p })}\n`);
      },
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    { format: ` ${command} {bar} {percentage}% | {done} / {total} | {what}`, hideCursor: true, stream: process.stderr, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    event: (p) => {
      const total = p.event === 'blob' ? p.bytesTotal : p.event === 'bytes' ? p.bytesTotal : undefined;
      const done = p.event === 'blob' || p.event === 'bytes' ? p.bytesDone : undefined;
      if (p.event === 'image') {
        process.stderr.write(`${p.image}: ${p.digest} (${p.blobs} blobs, ${formatBytes(p.bytes)}, ${p.fetched} fetched)\n`);
        return;
      }
      if (done === undefined) return;
      if (!started) {
        bar.start(Math.max(1, total ?? 0), 0, { done: '', total: '', what: '' });
        started = true;
      }
      if (total) bar.setTotal(total);
      bar.update(done, { done: formatBytes(done), total: total ? formatBytes(total) : '?', what: p.event === 'blob' ? p.digest.slice(0, 19) : '' });
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}
