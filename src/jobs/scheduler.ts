/**
 * @module jobs/scheduler
 * Named periodic tasks (gc, watch-list refresh, pruning old jobs) in one place, instead of timers
 * scattered through the code. A task usually just enqueues a durable job, so the work itself
 * survives restarts and retries; the scheduler only decides when.
 *
 * Each task's next run is timed from the end of the previous one, so two runs of the same task
 * never overlap however long one takes. Timers are unref'd: a schedule alone never keeps the
 * process alive.
 */
import type { Logger } from '../util/logger.ts';

export interface SchedulerOptions {
  log: Logger;
}

export interface EveryOptions {
  /** Run once right away instead of after the first interval. */
  immediately?: boolean;
}

interface Task {
  timer: NodeJS.Timeout | undefined;
  running: Promise<void> | undefined;
}

export class Scheduler {
  readonly #log: Logger;
  readonly #tasks = new Map<string, Task>();
  #stopped = false;

  constructor({ log }: SchedulerOptions) {
    this.#log = log.child({ module: 'scheduler' });
  }

  /**
   * Runs `fn` every `intervalMs`. An interval of 0 means off (the config convention), so callers
   * can pass a configured interval straight through. Errors are logged and the schedule goes on.
   */
  every(name: string, intervalMs: number, fn: () => unknown, { immediately = false }: EveryOptions = {}): void {
    if (this.#stopped) throw new Error(`Cannot schedule '${name}': the scheduler is stopped`);
    if (this.#tasks.has(name)) throw new Error(`A task named '${name}' is already scheduled`);
    if (!Number.isFinite(intervalMs) || intervalMs < 0) {
      throw new TypeError(`Expected the interval of '${name}' to be a duration in ms, got '${String(intervalMs)}'`);
    }
    if (intervalMs === 0) {
      this.#log.debug({ task: name }, 'task is off (interval 0)');
      return;
    }
    const task: Task = { timer: undefined, running: undefined };
    this.#tasks.set(name, task);
    const schedule = (delay: number) => {
      task.timer = setTimeout(run, delay).unref();
    };
    const run = () => {
      task.timer = undefined;
      task.running = (async () => {
        try {
          await fn();
        } catch (err) {
          this.#log.error({ err, task: name }, 'scheduled task failed');
        }
      })().finally(() => {
        task.running = undefined;
        if (!this.#stopped) schedule(intervalMs);
      });
    };
    if (immediately) run();
    else schedule(intervalMs);
  }

  /** Cancels every schedule; resolves when runs already under way have finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const task of this.#tasks.values()) clearTimeout(task.timer);
    await Promise.all([...this.#tasks.values()].map((task) => task.running));
  }
}
