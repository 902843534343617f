/**
 * @module cli/serve
 * `ocimirror serve`: load config → lock the data directory → start the mirror → on SIGTERM/SIGINT
 * drain, unlock and exit 0. A bad config exits 2 with the key path in the message, before anything
 * is opened; the other failures are in cli/program's exit-code table. SIGHUP, and a change of the
 * config file (unless --no-watch), reload the config with the same loader, file, environment and
 * flags as start-up; a bad one is reported and the running config stays.
 */
import type { Command } from 'commander';
import { DEFAULT_CONFIG_FILE, loadConfig, type LoadOptions } from '../config/load.ts';
import { watchConfigFile } from '../config/config-watch.ts';
import { handled } from './cli-error.ts';
import { lockDataDir } from './data-lock.ts';
import { createLogger, type Logger } from '../util/logger.ts';
import { startMirror } from '../mirror.ts';
import { fullCollection, startIdleCollector } from '../util/idle-collector.ts';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('start the pull-through mirror')
    .option('-c, --config <file>', 'YAML config file (default: $OCIMIRROR_CONFIG or the bundled config/ocimirror.yaml)')
    .option('--listen <addr>', 'listen address host:port (overrides listen)')
    .option('--data <dir>', 'data directory (overrides storage.path)')
    .option('--upstream <url>', 'mirror this one upstream for every request (replaces upstreams)')
    .option('--registry <names>', "registry names clients use for --upstream, comma-separated (e.g. docker.io; default: the URL's host:port)")
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
    .option('--no-watch', 'reload the config on SIGHUP (and POST /admin/v1/reload) only, not when its file changes')
    .action(handled(async (opts: { config?: string; listen?: string; data?: string; upstream?: string; registry?: string; logLevel?: string; watch: boolean }) => {
      const loadOptions: LoadOptions = {
        file: opts.config ?? (process.env.OCIMIRROR_CONFIG || undefined),
        overrides: { listen: opts.listen, data: opts.data, upstream: opts.upstream, registry: opts.registry, logLevel: opts.logLevel },
      };
      const config = loadConfig(loadOptions);
      const lock = lockDataDir(config.storage.path);
      const log = createLogger(config.log.level);
      // A reload reads exactly what a restart would: the same file, environment and flags.
      const mirror = await startMirror(config, log, { loadConfig: () => loadConfig(loadOptions) });
      const configFile = loadOptions.file ?? DEFAULT_CONFIG_FILE;
      const watch = opts.watch ? watchConfigFile(configFile, () => void (mirror.draining || mirror.reload('file'))) : { close: () => {} };
      process.on('SIGHUP', () => {
        if (!mirror.draining) mirror.reload('SIGHUP');
      });
      // Memory back after bursts (server.idleGc); the serving process only, not in-process test mirrors.
      // server.idleGc: false (OCIMIRROR_IDLE_GC=0) turns it off: steadier latency in the burst after an idle spell, more memory kept.
      const idle = !config.server.idleGc ? { stop: () => {} } : startIdleCollection(log, () => mirror.trimBuffers());
      let signalled = false;
      const shutdown = (signal: string) => {
        if (signalled) {
          log.warn({ signal }, 'second signal: exiting now');
          process.exit(1);
        }
        signalled = true;
        idle.stop();
        watch.close();
        log.info({ signal, inFlight: mirror.server.inFlight, graceMs: mirror.config.server.shutdownGrace }, 'draining');
        mirror.stop().then(
          () => {
            lock.release();
            process.exit(0);
          },
          (err: unknown) => {
            log.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    }));
}

/** The idle collector (util/idle-collector) with the pools it empties, logging each collection. */
function startIdleCollection(log: Logger, trimBuffers: () => void): { stop(): void } {
  const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
  return startIdleCollector({
    trims: [trimBuffers],
    collect: fullCollection(),
    // RSS a second later: V8 unmaps freed pages on a background task after the collection returns.
    onCollect: (ms, before) =>
      void setTimeout(() => log.info({ ms: Math.round(ms), rssMiBBefore: mib(before), rssMiB: mib(process.memoryUsage.rss()) }, 'idle collection'), 1_000).unref(),
  });
}
