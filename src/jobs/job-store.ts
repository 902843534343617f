/**
 * @module jobs/job-store
 * Durable job rows in the app's SQLite metadata database. A job survives the process: whatever
 * was queued or running when it died is found here again at start-up. Every transition is one
 * UPDATE guarded by the state it leaves, so a late `complete` from a handler that was already
 * released cannot resurrect or double-count a job. All statements are prepared once.
 *
 * Only the `jobs` table and its indexes are created here; other tables (and `user_version`) belong
 * to cache/metadata.
 */
import type { Database, Statement } from 'better-sqlite3';
import { JOB_PRIORITY, JOB_STATES, JOB_TYPES, type Job, type JobState, type JobType } from './job-types.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  -- AUTOINCREMENT: ids are handed out by the admin API, so a pruned id must never name a new job.
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  type         TEXT NOT NULL,
  key          TEXT,
  payload      TEXT,
  state        TEXT NOT NULL,
  priority     INTEGER NOT NULL,
  attempts     INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  last_error   TEXT,
  run_after    INTEGER NOT NULL,
  created_at   INTEGER NOT NULL,
  started_at   INTEGER,
  finished_at  INTEGER,
  progress     TEXT,
  result       TEXT
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(state, priority DESC, id);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(state, finished_at);
-- At most one live job per (type, key): the database enforces the dedupe enqueue() promises.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_live_key ON jobs(type, key)
  WHERE key IS NOT NULL AND state IN ('queued', 'running');
`;

/** What the store needs of its connection: cache/metadata hands it out as `connectionForJobs()`. */
export type JobsDatabase = Pick<Database, 'exec' | 'prepare' | 'transaction'>;

interface JobRow {
  id: number;
  type: JobType;
  key: string | null;
  payload: string | null;
  state: JobState;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  run_after: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  progress: string | null;
  result: string | null;
}

export interface JobStoreOptions {
  /** Attempts allowed when enqueue() is not told otherwise. */
  maxAttempts?: number;
  now?: () => number;
}

export interface EnqueueOptions {
  /** Dedupe key (e.g. a digest): an already queued or running job of the same type and key is returned instead. */
  key?: string;
  /** Epoch ms before which the job is not claimed; default now. */
  runAfter?: number;
  maxAttempts?: number;
}

export interface ListOptions {
  state?: JobState;
  type?: JobType;
  limit?: number;
  offset?: number;
}

export interface RequeueResult {
  /** Jobs put back in the queue. */
  requeued: number;
  /** Jobs failed instead: they were running past their last attempt, so they may be what kills the process. */
  failed: number;
}

export type JobCounts = Record<JobType, Record<JobState, number>>;

export class JobStore {
  readonly #now: () => number;
  readonly #maxAttempts: number;
  readonly #stmt: Record<
    | 'insert'
    | 'live'
    | 'get'
    | 'list'
    | 'claim'
    | 'complete'
    | 'fail'
    | 'release'
    | 'defer'
    | 'progress'
    | 'failCrashLoops'
    | 'requeueRunning'
    | 'counts'
    | 'depth'
    | 'prune',
    Statement
  >;
  readonly #enqueue: (type: JobType, payload: unknown, opts: EnqueueOptions) => JobRow;
  readonly #requeueInterrupted: () => RequeueResult;

  constructor(db: JobsDatabase, { maxAttempts = 5, now = Date.now }: JobStoreOptions = {}) {
    assertAttempts(maxAttempts);
    this.#maxAttempts = maxAttempts;
    this.#now = now;
    db.exec(SCHEMA);
    const p = (sql: string) => db.prepare(sql);
    this.#stmt = {
      insert: p(`INSERT INTO jobs (type, key, payload, state, priority, max_attempts, run_after, created_at)
                 VALUES (@type, @key, @payload, 'queued', @priority, @maxAttempts, @runAfter, @now) RETURNING *`),
      live: p(`SELECT * FROM jobs WHERE type = ? AND key = ? AND state IN ('queued', 'running')`),
      get: p(`SELECT * FROM jobs WHERE id = ?`),
      list: p(`SELECT * FROM jobs
               WHERE (@state IS NULL OR state = @state) AND (@type IS NULL OR type = @type)
               ORDER BY id DESC LIMIT @limit OFFSET @offset`),
      // One statement, so no other connection can claim the same rows in between. A new attempt
      // starts from scratch, so the previous attempt's progress goes.
      claim: p(`UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = @now, progress = NULL
                WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_after <= @now
                             ORDER BY priority DESC, id LIMIT @limit)
                RETURNING *`),
      complete: p(`UPDATE jobs SET state = 'done', finished_at = @now, result = @result
                   WHERE id = @id AND state = 'running' RETURNING *`),
      // SQLite evaluates every SET expression against the old row, so the CASEs agree with each other.
      fail: p(`UPDATE jobs SET
                 last_error = @error,
                 state = CASE WHEN @retryAt IS NOT NULL AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                 run_after = CASE WHEN @retryAt IS NOT NULL AND attempts < max_attempts THEN @retryAt ELSE run_after END,
                 finished_at = CASE WHEN @retryAt IS NOT NULL AND attempts < max_attempts THEN NULL ELSE @now END
               WHERE id = @id AND state = 'running' RETURNING *`),
      release: p(`UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), progress = NULL
                  WHERE id = ? AND state = 'running' RETURNING *`),
      defer: p(`UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), progress = NULL, run_after = @runAfter, last_error = @reason
                WHERE id = @id AND state = 'running' RETURNING *`),
      progress: p(`UPDATE jobs SET progress = ? WHERE id = ? AND state = 'running'`),
      failCrashLoops: p(`UPDATE jobs SET state = 'failed', finished_at = @now,
                           last_error = 'the process exited while this job was running (attempt ' || attempts || ' of ' || max_attempts
                                        || '); not run again in case the job is what stops it'
                         WHERE state = 'running' AND attempts > max_attempts`),
      requeueRunning: p(`UPDATE jobs SET state = 'queued', progress = NULL WHERE state = 'running'`),
      counts: p(`SELECT type, state, COUNT(*) AS n FROM jobs GROUP BY type, state`),
      depth: p(`SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'running')`),
      prune: p(`DELETE FROM jobs WHERE state IN ('done', 'failed') AND finished_at < ?`),
    };
    this.#enqueue = db.transaction((type: JobType, payload: unknown, { key, runAfter, maxAttempts }: EnqueueOptions) => {
      if (key !== undefined) {
        const live = this.#stmt.live.get(type, key) as JobRow | undefined;
        if (live) return live;
      }
      const now = this.#now();
      return this.#stmt.insert.get({
        type,
        key: key ?? null,
        payload: toJson(payload),
        priority: JOB_PRIORITY[type],
        maxAttempts: maxAttempts ?? this.#maxAttempts,
        runAfter: runAfter ?? now,
        now,
      }) as JobRow;
    });
    this.#requeueInterrupted = db.transaction(() => {
      const failed = this.#stmt.failCrashLoops.run({ now: this.#now() }).changes;
      const requeued = this.#stmt.requeueRunning.run().changes;
      return { requeued, failed };
    });
  }

  /** Adds a queued job, or returns the live one with the same type and `key` (its payload wins). */
  enqueue(type: JobType, payload: unknown, opts: EnqueueOptions = {}): Job {
    if (!(JOB_TYPES as readonly string[]).includes(type)) {
      throw new TypeError(`Expected a job type (${JOB_TYPES.join(', ')}), got '${String(type)}'`);
    }
    if (opts.maxAttempts !== undefined) assertAttempts(opts.maxAttempts);
    return toJob(this.#enqueue(type, payload, opts));
  }

  get(id: number): Job | undefined {
    const row = this.#stmt.get.get(id) as JobRow | undefined;
    return row && toJob(row);
  }

  /** Newest first. */
  list({ state, type, limit = 100, offset = 0 }: ListOptions = {}): Job[] {
    const rows = this.#stmt.list.all({ state: state ?? null, type: type ?? null, limit, offset }) as JobRow[];
    return rows.map(toJob);
  }

  /**
   * Marks up to `limit` runnable queued jobs running and returns them, highest priority first and
   * oldest first within a priority, counting the attempt.
   */
  claim(now: number, limit: number): Job[] {
    if (limit <= 0) return [];
    const rows = this.#stmt.claim.all({ now, limit }) as JobRow[];
    // RETURNING gives rows in no promised order.
    return rows.map(toJob).sort((a, b) => JOB_PRIORITY[b.type] - JOB_PRIORITY[a.type] || a.id - b.id);
  }

  /** running → done. Undefined when the job was not running (released, or already finished). */
  complete(id: number, result?: unknown): Job | undefined {
    const row = this.#stmt.complete.get({ id, result: toJson(result), now: this.#now() }) as JobRow | undefined;
    return row && toJob(row);
  }

  /**
   * running → queued again at `retryAt`, or → failed when there is no `retryAt` or the attempts
   * are used up. Undefined when the job was not running.
   */
  fail(id: number, error: unknown, { retryAt }: { retryAt?: number } = {}): Job | undefined {
    const row = this.#stmt.fail.get({ id, error: errorMessage(error), retryAt: retryAt ?? null, now: this.#now() }) as
      | JobRow
      | undefined;
    return row && toJob(row);
  }

  /**
   * running → queued without counting the attempt: the job did not fail, it was interrupted
   * (the runner is stopping). Undefined when the job was not running.
   */
  release(id: number): Job | undefined {
    const row = this.#stmt.release.get(id) as JobRow | undefined;
    return row && toJob(row);
  }

  /**
   * running → queued at `runAfter` without counting the attempt: the job chose to wait (an
   * upstream's rate-limit budget is low); `reason` shows in lastError. Undefined when not running.
   */
  defer(id: number, runAfter: number, reason: string): Job | undefined {
    const row = this.#stmt.defer.get({ id, runAfter, reason }) as JobRow | undefined;
    return row && toJob(row);
  }

  /** Records a running job's progress; ignored once the job is no longer running. */
  setProgress(id: number, progress: unknown): void {
    this.#stmt.progress.run(toJson(progress), id);
  }

  /**
   * At start-up: jobs left `running` by a process that died are queued again. The interrupted
   * attempt stays counted, and a job already past its last attempt is failed instead, so a job
   * that crashes the process cannot crash-loop it forever.
   */
  requeueInterrupted(): RequeueResult {
    return this.#requeueInterrupted();
  }

  /** Every type × state, zeros included, for metrics. */
  counts(): JobCounts {
    const counts = Object.fromEntries(
      JOB_TYPES.map((type) => [type, Object.fromEntries(JOB_STATES.map((state) => [state, 0]))]),
    ) as JobCounts;
    for (const { type, state, n } of this.#stmt.counts.all() as { type: JobType; state: JobState; n: number }[]) {
      // Rows of a type or state this version does not know (written by a newer one) are not counted.
      const byState = counts[type];
      if (byState && state in byState) byState[state] = n;
    }
    return counts;
  }

  /** Jobs queued or running. */
  depth(): number {
    return (this.#stmt.depth.get() as { n: number }).n;
  }

  /** Deletes done and failed jobs that finished more than `olderThanMs` ago; returns how many. */
  prune(olderThanMs: number): number {
    return this.#stmt.prune.run(this.#now() - olderThanMs).changes;
  }
}

function assertAttempts(maxAttempts: number): void {
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new TypeError(`Expected maxAttempts to be a whole number of at least 1, got '${String(maxAttempts)}'`);
  }
}

function toJson(value: unknown): string | null {
  // JSON.stringify gives undefined for undefined and functions: store those as NULL.
  return JSON.stringify(value) ?? null;
}

function fromJson(text: string | null): unknown {
  return text === null ? null : JSON.parse(text);
}

function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

function toJob(row: JobRow): Job {
  return {
    id: row.id,
    type: row.type,
    key: row.key,
    payload: fromJson(row.payload),
    state: row.state,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    lastError: row.last_error,
    runAfter: row.run_after,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    progress: fromJson(row.progress),
    result: fromJson(row.result),
  };
}
