/**
 * @module reload/config-reloader
 * One config reload, whatever asked for it (SIGHUP, a change of the config file, POST
 * /admin/v1/reload): load the config as start-up does, keep the keys that need a restart as they
 * are, hand the rest to the mirror to apply all at once, and report the outcome in one place —
 * the log, the metrics and /readyz. A config that fails (to parse, to validate, to build) changes
 * nothing and every problem is reported by key path.
 */
import { ConfigError } from '../config/config-error.ts';
import { RESTART_ONLY, diffConfig, withRestartOnlyKept } from '../config/config-diff.ts';
import type { Config } from '../config/schema.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Logger } from '../util/logger.ts';

export interface ReloadOutcome {
  readonly result: 'ok' | 'failed';
  /** What asked for it: 'SIGHUP', 'file', 'admin'. */
  readonly trigger: string;
  /** ISO 8601. */
  readonly at: string;
  /** Key paths applied (empty when nothing changed or the reload failed). */
  readonly changed: readonly string[];
  /** Keys the loaded config changes that only a restart applies; they keep their running values. */
  readonly restartRequired: readonly string[];
  /** Every problem, by key path, when the reload failed. */
  readonly issues: readonly string[];
}

export interface ConfigReloaderOptions {
  /** The config the process started with. */
  started: Config;
  /** Reads the config as start-up did (same file, environment and flags); throws ConfigError. */
  load: () => Config;
  /** Applies a config whose restart-only keys equal the running ones; throws (ConfigError with every issue) having changed nothing. */
  apply: (next: Config, changed: readonly string[]) => void;
  log: Logger;
  metrics?: Metrics | undefined;
  now?: () => number;
}

export class ConfigReloader {
  readonly #opts: ConfigReloaderOptions;
  #applied: Config;
  #last: ReloadOutcome | undefined;

  constructor(opts: ConfigReloaderOptions) {
    this.#opts = opts;
    this.#applied = opts.started;
  }

  /** The config in effect now. */
  get config(): Config {
    return this.#applied;
  }

  /** The last reload's outcome; undefined before the first. */
  get last(): ReloadOutcome | undefined {
    return this.#last;
  }

  /** Synchronous from load to swap, so two triggers never interleave. */
  reload(trigger: string): ReloadOutcome {
    const { started, load, apply, log, metrics, now = Date.now } = this.#opts;
    let changed: string[] = [];
    let restartRequired: string[] = [];
    let issues: string[] = [];
    try {
      const loaded = load();
      restartRequired = diffConfig(started, loaded).restartOnly;
      const next = withRestartOnlyKept(started, loaded);
      changed = diffConfig(this.#applied, next).changed;
      if (changed.length > 0) apply(next, changed);
      this.#applied = next;
    } catch (err) {
      issues = err instanceof ConfigError ? [...err.issues] : [(err as Error).message];
      changed = [];
    }
    const result = issues.length === 0 ? 'ok' : 'failed';
    const outcome: ReloadOutcome = { result, trigger, at: new Date(now()).toISOString(), changed, restartRequired, issues };
    this.#last = outcome;
    metrics?.observeReload(result, restartRequired.length > 0);
    if (result === 'failed') {
      log.warn({ trigger, issues }, 'config reload failed: the running config is unchanged');
      return outcome;
    }
    log.info({ trigger, changed }, changed.length > 0 ? 'config reloaded' : 'config reloaded: nothing changed');
    if (restartRequired.length > 0) {
      const why = restartRequired.map((path) => `${path}: ${RESTART_ONLY.find((k) => k.path === path)?.why ?? 'fixed at start'}`);
      log.warn({ trigger, restartRequired, why }, 'config changes that apply only at a restart were left as they are');
    }
    return outcome;
  }
}
