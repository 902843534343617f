/**
 * @module cli/gc
 * `ocimirror gc`: removes orphans (files without rows, rows without files, blobs no cached
 * manifest references past gc.grace). With --url it asks a running mirror (admin API) and waits
 * for the job; with --offline it opens the data directory itself — only while no mirror runs on it.
 */
import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import { openStorage } from '../cache/storage.ts';
import { GarbageCollector } from '../cache/lifecycle/gc.ts';
import { createLogger } from '../util/logger.ts';
import { AdminClient, mirrorUrl } from './admin-client.ts';
import { EXIT, handled } from './cli-error.ts';
import { lockDataDir } from './data-lock.ts';

export function registerGc(program: Command): void {
  program
    .command('gc')
    .description('remove orphaned cache content (through a running mirror, or --offline on the data directory)')
    .option('--url <url>', 'the mirror (default: $OCIMIRROR_URL or http://127.0.0.1:5000)')
    .option('--token <token>', 'admin token (default: $OCIMIRROR_ADMIN_TOKEN)')
    .option('--offline', 'open the data directory directly (stop the mirror first)')
    .option('-c, --config <file>', 'config file, for --offline (default: $OCIMIRROR_CONFIG or the bundled one)')
    .option('--data <dir>', 'data directory, for --offline (overrides storage.path)')
    .option('--verify-sizes', 'with --offline: also stat every blob file and drop the ones whose size is wrong')
    .action(handled(async (opts: { url?: string; token?: string; offline?: boolean; config?: string; data?: string; verifySizes?: boolean }) => {
      if (!opts.offline) {
        const client = new AdminClient({ url: mirrorUrl(opts.url), token: opts.token ?? process.env.OCIMIRROR_ADMIN_TOKEN });
        const queued = await client.call<{ id: number }>('POST', '/gc');
        const job = await client.waitForJob(queued.id);
        process.stdout.write(`${JSON.stringify({ state: job.state, result: job.result, lastError: job.lastError }, null, 2)}\n`);
        if (job.state !== 'done') process.exitCode = EXIT.jobFailed;
        return;
      }
      const config = loadConfig({ file: opts.config ?? (process.env.OCIMIRROR_CONFIG || undefined), overrides: { data: opts.data } });
      const lock = lockDataDir(config.storage.path);
      try {
        const log = createLogger('warn');
        const storage = await openStorage({ path: config.storage.path, hotCacheBytes: config.hotCache.maxSize, log });
        try {
          const gc = new GarbageCollector({ metadata: storage.metadata, blobs: storage.blobs, hot: storage.hot, log });
          const report = await gc.collectGarbage({ grace: config.gc.grace, verifySizes: opts.verifySizes ?? false });
          process.stdout.write(`${JSON.stringify({ reconciled: storage.reconciled, ...report }, null, 2)}\n`);
        } finally {
          storage.close();
        }
      } finally {
        lock.release();
      }
    }));
}
