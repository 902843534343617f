/**
 * @module cli/prefetch
 * `ocimirror prefetch IMAGE...`: asks a running mirror (admin API) to prefetch images and shows
 * a progress bar per image until every job is done. Exit code 1 when any failed. An image that
 * names no registry goes to the mirror's defaultUpstream, as a pull of the same name would.
 */
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { formatBytes } from '../config/units.ts';
import { AdminClient, mirrorUrl, type JobView } from './admin-client.ts';
import { EXIT, handled } from './cli-error.ts';

export function registerPrefetch(program: Command): void {
  program
    .command('prefetch')
    .description('prefetch images into a running mirror (admin API), with progress bars')
    .argument('<images...>', "images such as docker.io/library/alpine:3.19 or ghcr.io/org/app@sha256:...")
    .option('--url <url>', 'the mirror (default: $OCIMIRROR_URL or http://127.0.0.1:5000)')
    .option('--token <token>', 'admin token (default: $OCIMIRROR_ADMIN_TOKEN)')
    .option('--platform <os/arch...>', 'platforms of an index to prefetch (default: the mirror\'s prefetch.platforms)')
    .option('--no-wait', 'queue the jobs and exit')
    .action(handled(async (images: string[], opts: { url?: string; token?: string; platform?: string[]; wait: boolean }) => {
      const client = new AdminClient({ url: mirrorUrl(opts.url), token: opts.token ?? process.env.OCIMIRROR_ADMIN_TOKEN });
      const queued = await client.call<{ jobs: Array<{ id: number; image: string }> }>('POST', '/prefetch', { images, platforms: opts.platform });
      if (!opts.wait) {
        for (const j of queued.jobs) process.stdout.write(`queued job ${j.id} for ${j.image}\n`);
        return;
      }
      const bars = new cliProgress.MultiBar(
        { format: ' {bar} {percentage}% | {image} | {blobs} blobs | {bytes}', hideCursor: true, clearOnComplete: false, stopOnComplete: true, noTTYOutput: !process.stderr.isTTY, notTTYSchedule: 2000 },
        cliProgress.Presets.shades_classic,
      );
      const width = Math.max(...queued.jobs.map((j) => j.image.length));
      const results = await Promise.all(
        queued.jobs.map(async (j) => {
          const bar = bars.create(1, 0, { image: j.image.padEnd(width), blobs: '-', bytes: '' });
          const update = (job: JobView) => {
            const p = job.progress ?? {};
            bar.setTotal(Math.max(1, p.bytesTotal ?? 1));
            bar.update(p.bytesDone ?? 0, { blobs: `${p.blobsDone ?? 0}/${p.blobsTotal ?? '?'}`, bytes: `${formatBytes(p.bytesDone ?? 0)} / ${formatBytes(p.bytesTotal ?? 0)}` });
          };
          const job = await client.waitForJob(j.id, { onUpdate: update });
          if (job.state === 'done') bar.update(bar.getTotal());
          return { image: j.image, job };
        }),
      );
      bars.stop();
      let failed = 0;
      for (const { image, job } of results) {
        if (job.state === 'failed') {
          failed++;
          process.stderr.write(`${image}: failed after ${job.attempts} attempt(s): ${job.lastError}\n`);
        } else {
          const p = (job.result ?? job.progress ?? {}) as Record<string, unknown>;
          process.stdout.write(`${image}: ${String(p.digest ?? '')} cached (${String(p.blobsTotal ?? 0)} blobs, ${String(p.fetched ?? 0)} fetched)\n`);
        }
      }
      if (failed > 0) process.exitCode = EXIT.jobFailed;
    }));
}
