/**
 * @module cli/bundle-remote
 * `ocimirror export --url` and `import --url`: bundles made and taken in by a RUNNING mirror
 * through its admin API, the file on this side. The mirror only reads and writes plain tar;
 * compression, volumes and reading a directory happen here, so the mirror spends no CPU on them.
 *
 * Export: POST /admin/v1/export answers the tar as it is written. It lands in `OUTPUT.part`
 * (or volumes without their manifest) and becomes the output only when the response ended
 * cleanly AND the tar ends with its end-of-archive blocks; a mirror that fails or dies midway
 * cuts the connection, and the partial output is removed.
 *
 * Import: a cheap admin call first (so a bad token or URL fails before gigabytes are read),
 * then the plain tar as the body of POST /admin/v1/import, answered with the summary once the
 * mirror has verified and published it, or with the error naming the offending digest.
 */
import { readFileSync } from 'node:fs';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';
import { BundleError } from '../bundle/bundle-error.ts';
import { openOutput, readPreviousIndex, type BundleProgress } from '../bundle/bundle-export.ts';
import { assertZstdAvailable, compressionForName, type Compression } from '../bundle/compression.ts';
import { dirEntries, openTarInput, TailKeeper } from '../bundle/layout-reader.ts';
import { entriesToTar } from '../bundle/layout-writer.ts';
import type { SyncReport } from '../sync/sync-report.ts';
import { AdminClient, networkReason, type JobView } from './admin-client.ts';
import { CliError, EXIT } from './cli-error.ts';

/** How long the mirror may send nothing in the middle of a bundle before the CLI gives up. */
const BODY_IDLE_MS = 10 * 60_000;

export interface RemoteExportOptions {
  output: string;
  compress: Compression | undefined;
  maxSize: number | undefined;
  since: string | undefined;
  platforms: readonly string[];
  onProgress: (p: BundleProgress) => void;
  onWarning: (message: string) => void;
}

/** A bundle problem (`detail.bundleError`) the mirror answered; BUNDLE_USAGE is the caller's mistake (exit 2). */
function answerError(client: AdminClient, what: string, status: number, text: string): CliError {
  const err = client.refusal(what, status, text);
  let code: unknown;
  try {
    code = (JSON.parse(text) as { errors?: Array<{ detail?: { bundleError?: unknown } }> }).errors?.[0]?.detail?.bundleError;
  } catch {
    code = undefined;
  }
  return code === 'BUNDLE_USAGE' ? new CliError(err.message, EXIT.usage, { cause: err }) : err;
}

/** The mirror's URL as the operator gave it, for messages. */
function mirrorOf(client: AdminClient): string {
  return client.base.replace(/\/admin\/v1$/, '');
}

function unreachable(client: AdminClient, cause: unknown): CliError {
  return new CliError(`cannot reach the mirror at ${mirrorOf(client)}: ${networkReason(cause)}; is it running there? (--url, OCIMIRROR_URL)`, EXIT.unreachable, { cause });
}

/** Counts bytes flowing through. */
function counting(onBytes: (total: number) => void): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      total += chunk.length;
      onBytes(total);
      cb(null, chunk);
    },
  });
}

/** The images of a sync file, synced into the running mirror's cache by a sync job first. */
export async function syncedRemote(client: AdminClient, file: string): Promise<string[]> {
  const queued = await client.call<JobView>('POST', '/sync', { name: file, yaml: readFileSync(file, 'utf8'), dest: 'cache', keepGoing: false });
  const job = await client.waitForJob(queued.id, { intervalMs: 500 });
  if (job.state === 'failed') throw new CliError(`export --sync ${file}: sync job ${job.id} failed: ${job.lastError ?? 'unknown error'}`, EXIT.jobFailed);
  const report = job.result as SyncReport;
  const failed = report.images.filter((i) => i.result === 'failed');
  if (failed.length > 0) {
    throw new CliError(`export --sync ${file}: ${failed.length} image(s) could not be synced: ${failed.map((i) => `${i.source}: ${i.error ?? 'failed'}`).join('; ')}`, EXIT.jobFailed);
  }
  return report.images.map((i) => i.source);
}

export async function exportRemote(client: AdminClient, images: readonly string[], opts: RemoteExportOptions): Promise<Record<string, unknown>> {
  const started = performance.now();
  const compression = opts.compress ?? compressionForName(opts.output);
  if (compression === 'zstd') assertZstdAvailable();
  const since = opts.since === undefined ? undefined : await readPreviousIndex(opts.since, opts.onWarning);
  let res;
  try {
    res = await request(`${client.base}/export`, {
      method: 'POST',
      headers: { ...client.authorization, 'content-type': 'application/json' },
      body: JSON.stringify({ images, platforms: opts.platforms, ...(since === undefined ? {} : { since }) }),
      // The mirror fetches what it does not have before the first byte: that may take long.
      headersTimeout: 0,
      bodyTimeout: BODY_IDLE_MS,
    });
  } catch (cause) {
    throw unreachable(client, cause);
  }
  if (res.statusCode !== 200) {
    const text = await res.body.text().catch(() => '');
    throw answerError(client, 'POST /admin/v1/export', res.statusCode, text);
  }
  const type = String(res.headers['content-type'] ?? '');
  if (!type.startsWith('application/x-tar')) {
    res.body.destroy();
    throw new CliError(`${client.base}/export answered ${type || 'no Content-Type'}, not a tar: is --url a mirror?`, EXIT.refused);
  }
  let planned: Record<string, unknown> = {};
  try {
    planned = JSON.parse(String(res.headers['ocimirror-export'] ?? '{}')) as Record<string, unknown>;
  } catch {
    /* counts are for progress and the summary only */
  }
  for (const w of Array.isArray(planned.warnings) ? planned.warnings : []) opts.onWarning(`the mirror: ${String(w)}`);
  const bytesTotal = typeof planned.bytes === 'number' ? planned.bytes : undefined;

  const out = await openOutput(opts.output, compression, opts.maxSize);
  const tail = new TailKeeper();
  try {
    await pipeline(res.body, tail, counting((n) => opts.onProgress({ event: 'bytes', bytesDone: n, bytesTotal })), out.stream);
  } catch (cause) {
    await out.discard();
    const reason = cause instanceof Error ? networkReason(cause) : String(cause);
    throw new CliError(`the export from ${mirrorOf(client)} stopped after ${tail.total} bytes (${reason}): the bundle is incomplete and its partial output was removed; the mirror's log says why`, EXIT.unreachable, { cause });
  }
  if (!tail.endsWithTrailer) {
    await out.discard();
    throw new CliError(`the export from ${mirrorOf(client)} ended after ${tail.total} bytes without tar's end-of-archive blocks: the bundle is incomplete and its partial output was removed`, EXIT.unreachable);
  }
  const files = await out.complete();
  const seconds = (performance.now() - started) / 1000;
  const bytes = typeof planned.bytes === 'number' ? planned.bytes : tail.total;
  const { warnings: _warnings, ...counts } = planned;
  return { ...counts, tarBytes: tail.total, seconds, mibPerSecond: seconds > 0 ? bytes / 1048576 / seconds : 0, files, url: mirrorOf(client) };
}

export interface RemoteImportOptions {
  dest: string | undefined;
  baseName: string | undefined;
  onProgress: (p: BundleProgress) => void;
  onWarning: (message: string) => void;
}

export async function importRemote(client: AdminClient, source: string, opts: RemoteImportOptions): Promise<Record<string, unknown>> {
  const started = performance.now();
  // A refused token or a wrong URL shows before any of the bundle is read.
  await client.call('GET', '/usage');
  let bytesRead = 0;
  let totalBytes: number | undefined;
  const onBytes = (n: number) => {
    bytesRead += n;
    opts.onProgress({ event: 'bytes', bytesDone: bytesRead, bytesTotal: totalBytes });
  };
  const input = await openTarInput(source, { onBytes });
  let body: Readable;
  let length: number | undefined;
  if (input === undefined) {
    // A layout directory goes as a tar packed on the fly.
    const packed = new PassThrough({ highWaterMark: 1 << 20 });
    entriesToTar(dirEntries(source, { onWarning: opts.onWarning }), packed).catch((err: unknown) => packed.destroy(err as Error));
    const counted = counting((n) => onBytes(n - bytesRead));
    pipeline(packed, counted).catch(() => {});
    body = counted;
  } else {
    body = input.stream;
    length = input.tarBytes;
    totalBytes = input.totalBytes;
  }
  // A failure reading the bundle here is named as such, not as the mirror being unreachable.
  let localError: Error | undefined;
  body.once('error', (err) => (localError = err));
  const query = new URLSearchParams();
  if (opts.dest !== undefined) query.set('dest', opts.dest);
  if (opts.baseName !== undefined) query.set('baseName', opts.baseName);
  let res;
  let text: string;
  try {
    res = await request(`${client.base}/import${query.size > 0 ? `?${query}` : ''}`, {
      method: 'POST',
      headers: { ...client.authorization, 'content-type': 'application/x-tar', ...(length === undefined ? {} : { 'content-length': String(length) }) },
      body,
      // The mirror answers once the whole bundle is verified and published.
      headersTimeout: 0,
      bodyTimeout: BODY_IDLE_MS,
    });
    text = await res.body.text();
  } catch (cause) {
    if (localError) throw localError instanceof BundleError ? localError : new BundleError('BUNDLE_INVALID', `${source} cannot be read: ${localError.message}`, { cause: localError });
    throw unreachable(client, cause);
  }
  if (res.statusCode !== 200) throw answerError(client, 'POST /admin/v1/import', res.statusCode, text);
  const summary = JSON.parse(text) as Record<string, unknown>;
  const seconds = (performance.now() - started) / 1000;
  const bytes = typeof summary.bytes === 'number' ? summary.bytes : 0;
  return { ...summary, bytesRead, seconds, mibPerSecond: seconds > 0 ? bytes / 1048576 / seconds : 0, url: mirrorOf(client) };
}
