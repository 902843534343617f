/**
 * @module jobs/job-runner
 * Runs durable jobs from the JobStore with bounded concurrency.
 *
 * "Lower priority than client pulls": client pulls never pass through this queue; they are
 * served directly by the proxy. Background work yields to them by being bounded: at most
 * `concurrency` jobs run at once, however many are queued, so a burst of prefetches can never take
 * more than that many upstream connections and disk writers away from clients. Among jobs, the
 * store claims by type priority (evict and delete before prefetch and refresh, gc last) and the
 * p-queue keeps that order for any claimed job waiting for a slot.
 *
 * Claiming only as many jobs as there are free slots keeps the `running` state honest: a row is
 * `running` only while a handler works on it, so after a crash every `running` row is exactly the
 * work that was interrupted.
 */
import PQueue from 'p-queue';
import { RegistryError } from '../registry/errors.ts';
import type { Logger } from '../util/logger.ts';
import type { EnqueueOptions, JobStore } from './job-store.ts';
import { JobDeferred } from './job-deferred.ts';
import { JOB_PRIORITY, type Job, type JobContext, type JobHandler, type JobType } from './job-types.ts';

export interface JobRunnerOptions {
  store: JobStore;
  handlers: Partial<Record<JobType, JobHandler>>;
  /** Jobs running at once (config `jobs.concurrency`). */
  concurrency: number;
  /** Attempts for jobs enqueued through the runner (config `jobs.maxAttempts`). */
  maxAttempts: number;
  /** Delay before the first retry, doubling per attempt (config `jobs.retryBackoff`, ms). */
  retryBackoff: number;
  /** Longest retry delay, however many attempts failed. */
  maxRetryBackoffMs?: number;
  /** How often to look for jobs that became runnable (retries, delayed jobs, other writers). */
  pollIntervalMs?: number;
  /** Handlers may report progress per chunk; it reaches SQLite at most this often (and once at the end). */
  progressIntervalMs?: number;
  /** Whether a failed attempt may succeed when tried again; {@link isTransient} by default. */
  retryable?: (err: unknown) => boolean;
  log: Logger;
  now?: () => number;
}

interface InFlight {
  readonly job: Job;
  readonly controller: AbortController;
  /** Set by stop(): the job was released back to the queue and its outcome no longer counts. */
  interrupted: boolean;
}

export class JobRunner {
  readonly #store: JobStore;
  readonly #handlers: Partial<Record<JobType, JobHandler>>;
  readonly #concurrency: number;
  readonly #maxAttempts: number;
  readonly #retryBackoff: number;
  readonly #maxRetryBackoff: number;
  readonly #pollIntervalMs: number;
  readonly #progressIntervalMs: number;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #retryable: (err: unknown) => boolean;
  readonly #queue: PQueue;
  readonly #inFlight = new Map<number, InFlight>();
  #poll: NodeJS.Timeout | undefined;
  #started = false;
  #closed = false;
  #stopped: Promise<void> | undefined;

  constructor({
    store,
    handlers,
    concurrency,
    maxAttempts,
    retryBackoff,
    maxRetryBackoffMs = 3_600_000,
    pollIntervalMs = 1000,
    progressIntervalMs = 250,
    retryable = isTransient,
    log,
    now = Date.now,
  }: JobRunnerOptions) {
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new TypeError(`Expected concurrency to be a whole number of at least 1, got '${String(concurrency)}'`);
    }
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
      throw new TypeError(`Expected maxAttempts to be a whole number of at least 1, got '${String(maxAttempts)}'`);
    }
    for (const [name, value] of Object.entries({ retryBackoff, maxRetryBackoffMs, progressIntervalMs })) {
      if (!Number.isFinite(value) || value < 0) throw new TypeError(`Expected ${name} to be a duration in ms, got '${String(value)}'`);
    }
    if (!Number.isFinite(pollIntervalMs) || pollIntervalMs <= 0) {
      throw new TypeError(`Expected pollIntervalMs to be a positive duration in ms, got '${String(pollIntervalMs)}'`);
    }
    this.#store = store;
    this.#handlers = handlers;
    this.#concurrency = concurrency;
    this.#maxAttempts = maxAttempts;
    this.#retryBackoff = retryBackoff;
    this.#maxRetryBackoff = maxRetryBackoffMs;
    this.#pollIntervalMs = pollIntervalMs;
    this.#progressIntervalMs = progressIntervalMs;
    this.#log = log.child({ module: 'jobs' });
    this.#now = now;
    this.#retryable = retryable;
    this.#queue = new PQueue({ concurrency });
  }

  /** Handlers working right now. */
  get running(): number {
    return this.#inFlight.size;
  }

  /**
   * Requeues what a previous process left running, then starts claiming. Call it once, after the
   * database is open and before anything enqueues; only one runner may own a database, since
   * another one's running jobs would look interrupted.
   */
  start(): void {
    if (this.#closed) throw new Error('JobRunner cannot start again after stop()');
    if (this.#started) return;
    this.#started = true;
    const { requeued, failed } = this.#store.requeueInterrupted();
    if (requeued > 0) this.#log.info({ requeued }, 'requeued jobs interrupted by the last exit');
    if (failed > 0) this.#log.warn({ failed }, 'failed jobs that were running at the last exit on their final attempt');
    // unref: polling alone must not keep a finished process alive.
    this.#poll = setInterval(() => this.#claim(), this.#pollIntervalMs).unref();
    this.#claim();
  }

  /** Claims runnable jobs now instead of at the next poll; call after enqueueing. */
  wake(): void {
    this.#claim();
  }

  /** Enqueues with the configured attempts and wakes the runner. */
  enqueue(type: JobType, payload: unknown, opts: EnqueueOptions = {}): Job {
    const job = this.#store.enqueue(type, payload, { ...opts, maxAttempts: opts.maxAttempts ?? this.#maxAttempts });
    this.wake();
    return job;
  }

  /** Resolves when no job is running and none was claimed in the meantime. */
  onIdle(): Promise<void> {
    return this.#queue.onIdle();
  }

  /**
   * Stops claiming and gives running handlers `graceMs` to finish. Those still running then are
   * released back to `queued` (the attempt is not counted: they were interrupted, not failed) and
   * their signals aborted, so the next start runs them again. Resolves once every handler has
   * returned, so handlers must honour the signal.
   */
  stop(graceMs = 0): Promise<void> {
    this.#closed = true;
    clearInterval(this.#poll);
    this.#stopped ??= this.#drain(graceMs);
    return this.#stopped;
  }

  async #drain(graceMs: number): Promise<void> {
    if (this.#inFlight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<boolean>((resolve) => {
        // Not unref'd: the grace period is a promise to the handlers, the process should honour it.
        timer = setTimeout(() => resolve(true), graceMs);
      });
      const timedOut = await Promise.race([this.#queue.onIdle().then(() => false), graceOver]);
      clearTimeout(timer);
      if (timedOut) this.#interrupt();
    }
    await this.#queue.onIdle();
  }

  #interrupt(): void {
    const reason = new Error('The job runner is stopping; the job runs again after restart');
    for (const entry of this.#inFlight.values()) {
      entry.interrupted = true;
      // Released before the abort, so the row is right even if the process exits before the handler returns.
      try {
        this.#store.release(entry.job.id);
      } catch (err) {
        this.#log.error({ err, jobId: entry.job.id }, 'could not release an interrupted job; it is requeued at the next start');
      }
      entry.controller.abort(reason);
    }
    this.#log.info({ jobs: this.#inFlight.size }, 'interrupted running jobs; they run again after restart');
  }

  #claim(): void {
    if (!this.#started || this.#closed) return;
    const free = this.#concurrency - this.#inFlight.size;
    if (free <= 0) return;
    let jobs: Job[];
    try {
      jobs = this.#store.claim(this.#now(), free);
    } catch (err) {
      this.#log.error({ err }, 'claiming jobs failed');
      return;
    }
    for (const job of jobs) {
      const entry: InFlight = { job, controller: new AbortController(), interrupted: false };
      this.#inFlight.set(job.id, entry);
      void this.#queue.add(() => this.#run(entry), { priority: JOB_PRIORITY[job.type] });
    }
  }

  /** Never rejects: every outcome is recorded in the store or logged. */
  async #run(entry: InFlight): Promise<void> {
    const log = this.#log.child({ jobId: entry.job.id, jobType: entry.job.type, attempt: entry.job.attempts });
    try {
      if (!entry.interrupted) await this.#attempt(entry, log);
    } catch (err) {
      // Only bookkeeping lands here (e.g. the database is closed); the row stays running and the next start requeues it.
      log.error({ err }, 'recording the outcome of a job failed');
    } finally {
      this.#inFlight.delete(entry.job.id);
      this.#claim();
    }
  }

  async #attempt(entry: InFlight, log: Logger): Promise<void> {
    const { job, controller } = entry;
    // A function, not a copy: stop() may set the flag while the handler is awaited.
    const interrupted = () => entry.interrupted;
    const handler = this.#handlers[job.type];
    if (!handler) {
      // Permanent: retrying cannot make a handler appear in this process.
      this.#store.fail(job.id, new Error(`No handler is registered for '${job.type}' jobs`));
      log.error('job failed: no handler for its type');
      return;
    }
    const progress = throttledProgress((p) => this.#store.setProgress(job.id, p), this.#progressIntervalMs, this.#now);
    const ctx: JobContext = {
      signal: controller.signal,
      progress: (p) => {
        if (!interrupted()) progress.report(p);
      },
    };
    try {
      const result = await handler(job, ctx);
      if (interrupted()) return;
      progress.flush();
      // Inside the try: a result that cannot be stored (not JSON) fails the attempt like a throw would.
      this.#store.complete(job.id, result);
      log.debug('job done');
    } catch (err) {
      if (interrupted()) return;
      progress.flush();
      if (err instanceof JobDeferred) {
        this.#store.defer(job.id, err.retryAt, err.message);
        log.info({ retryAt: err.retryAt, reason: err.message }, 'job deferred');
        return;
      }
      if (!this.#retryable(err)) {
        this.#store.fail(job.id, err);
        log.warn({ err }, 'job failed; the error is permanent, so it is not retried');
        return;
      }
      const retryAt = this.#now() + this.#backoff(job.attempts);
      const after = this.#store.fail(job.id, err, { retryAt });
      if (after?.state === 'failed') log.error({ err, attempts: after.attempts }, 'job failed; no attempts left');
      else log.warn({ err, retryAt }, 'job attempt failed; it will be retried');
    }
  }

  #backoff(attempts: number): number {
    return Math.min(this.#retryBackoff * 2 ** (attempts - 1), this.#maxRetryBackoff);
  }
}

/**
 * Whether an attempt that failed with `err` may succeed later. An upstream answer that will not
 * change by asking again (404 for a missing tag, 400, 401/403 after the client already fetched a
 * fresh token, a registry this mirror does not serve) fails the job at once; outages, 5xx, 429
 * and network errors (anything that is not a RegistryError) are retried with backoff.
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof RegistryError) return err.status >= 500 || err.code === 'TOOMANYREQUESTS';
  return true;
}

/** Writes the first report at once, then at most one per interval; flush() writes the last one held back. */
function throttledProgress(write: (p: unknown) => void, intervalMs: number, now: () => number) {
  let lastWrite = -Infinity;
  let held: { value: unknown } | undefined;
  return {
    report(value: unknown): void {
      const t = now();
      if (t - lastWrite >= intervalMs) {
        lastWrite = t;
        held = undefined;
        write(value);
      } else held = { value };
    },
    flush(): void {
      if (held) write(held.value);
      held = undefined;
    },
  };
}
