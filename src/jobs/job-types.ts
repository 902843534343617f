/**
 * @module jobs/job-types
 * The vocabulary of the durable background queue: what a job is, the states it moves through,
 * and which kinds of work go first when several are runnable.
 *
 * ```
 *   enqueue ──▶ queued ──claim──▶ running ──complete──▶ done
 *                 ▲                  │
 *                 └──fail (retry)────┤
 *                 └──release/crash───┤
 *                                    └──fail (attempts used up, or a permanent error)──▶ failed
 * ```
 */

export const JOB_TYPES = ['prefetch', 'evict', 'delete', 'gc', 'refresh', 'sync'] as const;
export type JobType = (typeof JOB_TYPES)[number];

export const JOB_STATES = ['queued', 'running', 'done', 'failed'] as const;
export type JobState = (typeof JOB_STATES)[number];

/**
 * Higher runs first. Eviction frees a disk that may be full and deletion is something an operator
 * asked for and is waiting on; prefetch, refresh and sync only warm the cache, and gc tidies orphans
 * that cost nothing but space, so it can wait behind everything.
 */
export const JOB_PRIORITY: Readonly<Record<JobType, number>> = {
  evict: 3,
  delete: 2,
  prefetch: 1,
  refresh: 1,
  sync: 1,
  gc: 0,
};

export interface Job {
  readonly id: number;
  readonly type: JobType;
  /** Dedupe key: while a job with the same type and key is queued or running, enqueue returns it. */
  readonly key: string | null;
  readonly payload: unknown;
  readonly state: JobState;
  /** Attempts started so far, including the one running now. */
  readonly attempts: number;
  readonly maxAttempts: number;
  /** Message of the latest failed attempt; kept after a later success so retries stay visible. */
  readonly lastError: string | null;
  /** Epoch ms before which the job is not claimed (retry backoff, or a delayed enqueue). */
  readonly runAfter: number;
  readonly createdAt: number;
  /** Start of the latest attempt. */
  readonly startedAt: number | null;
  /** Set when the job reaches `done` or `failed`. */
  readonly finishedAt: number | null;
  readonly progress: unknown | null;
  readonly result: unknown | null;
}

export interface JobContext {
  /** Aborted when the runner stops before the handler finished; the job is queued again. */
  readonly signal: AbortSignal;
  /** Records progress (JSON-serialisable) where `get(id)` and the admin API can see it. */
  progress(progress: unknown): void;
}

/**
 * Does the work of one job. Handlers must be idempotent: a job interrupted by a crash or a
 * shutdown runs again from the start. The resolved value (JSON-serialisable) is kept as `result`.
 */
export type JobHandler = (job: Job, ctx: JobContext) => Promise<unknown>;
