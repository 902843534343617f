/**
 * @module cli/sync-progress
 * How `ocimirror sync` shows its events. On a terminal: a bar for the image being copied (bytes,
 * rate, ETA) and one for the whole run (images, bytes fetched, rate, ETA), with a line per image
 * done. Anywhere else (a pipe, a log collector, CI): one JSON object per line on stdout for each
 * event except per-blob progress, so a script can follow the run without parsing text.
 */
import cliProgress from 'cli-progress';
import { formatBytes } from '../config/units.ts';
import type { SyncEvent } from '../sync/sync-report.ts';

export interface SyncDisplay {
  event(e: SyncEvent): void;
  stop(): void;
}

/** One JSON line per event on `out` (progress events are left out: they come per blob). */
export function jsonLines(out: NodeJS.WritableStream = process.stdout): SyncDisplay {
  return {
    event(e) {
      if (e.event === 'image-progress') return;
      out.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
    },
    stop() {},
  };
}

function rate(bytes: number, since: number): string {
  const seconds = (Date.now() - since) / 1000;
  return seconds <= 0 ? '-' : `${formatBytes(bytes / seconds)}/s`;
}

/** Bars on stderr (cli-progress), for a terminal. */
export function progressBars(): SyncDisplay {
  const bars = new cliProgress.MultiBar(
    { format: ' {bar} {percentage}% | {label} | {detail} | ETA {eta_formatted}', hideCursor: true, clearOnComplete: false, stopOnComplete: false, autopadding: true },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  let fetchedBytes = 0;
  let done = 0;
  let overall: cliProgress.SingleBar | undefined;
  let current: { bar: cliProgress.SingleBar; since: number; source: string } | undefined;
  const finishCurrent = () => {
    if (current) bars.remove(current.bar);
    current = undefined;
  };
  return {
    event(e) {
      switch (e.event) {
        case 'plan':
          overall = bars.create(Math.max(1, e.images), 0, { label: 'all images', detail: `0/${e.images} images` });
          break;
        case 'note':
          bars.log(`note: ${e.message}\n`);
          break;
        case 'paused':
          bars.log(`paused: upstream ${e.upstream}: ${e.reason}, until ${e.until}\n`);
          break;
        case 'image-started':
          finishCurrent();
          current = { bar: bars.create(1, 0, { label: e.source, detail: 'resolving' }), since: Date.now(), source: e.source };
          break;
        case 'image-progress':
          if (current?.source !== e.source) break;
          current.bar.setTotal(Math.max(1, e.bytesTotal));
          current.bar.update(e.bytesDone, { detail: `${e.blobsDone}/${e.blobsTotal} blobs, ${formatBytes(e.bytesDone)} / ${formatBytes(e.bytesTotal)}, ${rate(e.bytesDone, current.since)}` });
          break;
        case 'image-done': {
          if (current?.source === e.source) finishCurrent();
          fetchedBytes += e.bytesFetched;
          const what = e.result === 'failed'
            ? `FAILED ${e.source}: ${e.error}`
            : `${e.result === 'ok' ? 'copied ' : e.current === false ? 'would copy' : 'current'} ${e.source} ${e.digest ?? ''} (${e.bytes === null ? '?' : formatBytes(e.bytes)}, ${e.blobsFetched} blobs fetched)`;
          bars.log(`${what}\n`);
          // Selections that failed before the plan was known have no place on the overall bar.
          if (overall) {
            done++;
            overall.update(done, { detail: `${done}/${overall.getTotal()} images, ${formatBytes(fetchedBytes)} fetched, ${rate(fetchedBytes, started)}` });
          }
          break;
        }
        case 'sync-done':
          finishCurrent();
          // A redraw flushes the lines logged since the last one, which stop() alone would drop.
          bars.update();
          bars.stop();
          process.stderr.write(
            `sync ${e.stoppedEarly ? 'stopped early' : 'done'}: ${e.images} images, ${e.ok} copied, ${e.skipped} current or skipped, ${e.failed} failed; ${e.blobsFetched} blobs (${formatBytes(e.bytesFetched)}) fetched\n`,
          );
          break;
      }
    },
    stop() {
      bars.stop();
    },
  };
}
