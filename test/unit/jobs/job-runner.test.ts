/**
 * @module test/unit/jobs/job-runner
 * The runner over a real SQLite file: results and retries with exponential backoff recorded in the
 * store (only for transient failures: a permanent upstream answer fails the job at once), progress visible while a job runs, the concurrency bound and type priorities, a job that
 * survives the process dying mid-run, and a graceful stop that leaves interrupted jobs queued.
 * Polling is set far out so only wake(), start() and finishing jobs drive claims: the tests decide
 * when anything runs, and the clock only moves when they move it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Database as DB } from 'better-sqlite3';
import { JobStore } from '../../../src/jobs/job-store.ts';
import { JobDeferred } from '../../../src/jobs/job-deferred.ts';
import { JobRunner, isTransient, type JobRunnerOptions } from '../../../src/jobs/job-runner.ts';
import { RegistryError, type ErrorCode } from '../../../src/registry/errors.ts';
import type { Job, JobHandler, JobType } from '../../../src/jobs/job-types.ts';
import { silentLogger } from '../../../src/util/logger.ts';
import { clock, tempDb, type TempDb } from './temp-db.ts';

let tmp: TempDb;
let db: DB;
let time: ReturnType<typeof clock>;
let store: JobStore;
const runners: JobRunner[] = [];

function runner(handlers: Partial<Record<JobType, JobHandler>>, opts: Partial<JobRunnerOptions> = {}): JobRunner {
  const r = new JobRunner({
    store,
    handlers,
    concurrency: 2,
    maxAttempts: 3,
    retryBackoff: 100,
    pollIntervalMs: 3_600_000,
    log: silentLogger,
    now: time.now,
    ...opts,
  });
  runners.push(r);
  return r;
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const tick = () => new Promise((r) => setTimeout(r, 1));

beforeEach(() => {
  tmp = tempDb();
  db = tmp.open();
  time = clock();
  store = new JobStore(db, { now: time.now });
});

afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.stop()));
  tmp.cleanup();
});

describe('JobRunner: outcomes', () => {
  it('runs a job and records its result', async () => {
    const r = runner({ delete: async (job) => ({ removed: (job.payload as { ref: string }).ref }) });
    r.start();
    const job = r.enqueue('delete', { ref: 'library/alpine:3.19' });
    await r.onIdle();
    expect(store.get(job.id)).toMatchObject({ state: 'done', attempts: 1, result: { removed: 'library/alpine:3.19' } });
  });

  it('retries a failing job with exponential backoff and fails it with the last error after maxAttempts', async () => {
    let calls = 0;
    const r = runner({
      prefetch: async () => {
        calls++;
        throw new Error(`upstream 503 (call ${calls})`);
      },
    });
    r.start();
    const start = time.now();
    const { id } = r.enqueue('prefetch', null);
    await r.onIdle();
    expect(store.get(id)).toMatchObject({ state: 'queued', attempts: 1, runAfter: start + 100, lastError: 'upstream 503 (call 1)' });

    time.advance(99);
    r.wake();
    await r.onIdle();
    expect(calls).toBe(1); // not before its runAfter

    time.advance(1);
    r.wake();
    await r.onIdle();
    expect(store.get(id)).toMatchObject({ state: 'queued', attempts: 2, runAfter: start + 100 + 200 });

    time.advance(200);
    r.wake();
    await r.onIdle();
    expect(calls).toBe(3);
    expect(store.get(id)).toMatchObject({ state: 'failed', attempts: 3, lastError: 'upstream 503 (call 3)', finishedAt: time.now() });
  });

  it('queues a deferred job again for its retry time without spending an attempt, however often it waits', async () => {
    let calls = 0;
    const r = runner({
      prefetch: async () => {
        calls++;
        if (calls <= 5) throw new JobDeferred(time.now() + 60_000, 'rate-limit budget under the floor');
        return { ok: true };
      },
    });
    r.start();
    const { id } = r.enqueue('prefetch', null);
    await r.onIdle();
    expect(store.get(id)).toMatchObject({ state: 'queued', attempts: 0, runAfter: time.now() + 60_000, lastError: 'rate-limit budget under the floor' });
    time.advance(59_999);
    r.wake();
    await r.onIdle();
    expect(calls).toBe(1);
    for (let i = 0; i < 5; i++) {
      time.advance(60_000);
      r.wake();
      await r.onIdle();
    }
    // Five waits with maxAttempts 3 and still done: waiting is not failing.
    expect(calls).toBe(6);
    expect(store.get(id)).toMatchObject({ state: 'done', attempts: 1, result: { ok: true } });
  });

  it('caps the retry delay however many attempts failed', async () => {
    const r = runner({ gc: async () => Promise.reject(new Error('busy')) }, { retryBackoff: 1000, maxRetryBackoffMs: 1500 });
    r.start();
    const { id } = r.enqueue('gc', null, { maxAttempts: 5 });
    await r.onIdle();
    expect(store.get(id)!.runAfter - time.now()).toBe(1000);
    time.advance(1000);
    r.wake();
    await r.onIdle();
    expect(store.get(id)!.runAfter - time.now()).toBe(1500);
  });

  it('completes a job that succeeds on a retry', async () => {
    let calls = 0;
    const r = runner({ refresh: async () => (++calls === 1 ? Promise.reject(new Error('timeout')) : 'fresh') }, { retryBackoff: 0 });
    r.start();
    const { id } = r.enqueue('refresh', null);
    await r.onIdle();
    expect(store.get(id)).toMatchObject({ state: 'done', attempts: 2, result: 'fresh', lastError: 'timeout' });
  });

  it('fails a job whose type has no handler at once, saying so', async () => {
    const r = runner({ prefetch: async () => null });
    r.start();
    const { id } = r.enqueue('evict', null);
    await r.onIdle();
    expect(store.get(id)).toMatchObject({ state: 'failed', attempts: 1, lastError: "No handler is registered for 'evict' jobs" });
  });

  it('fails the attempt when the result cannot be stored', async () => {
    const r = runner({ gc: async () => 10n }, { maxAttempts: 1 });
    r.start();
    const { id } = r.enqueue('gc', null);
    await r.onIdle();
    expect(store.get(id)).toMatchObject({ state: 'failed', lastError: expect.stringMatching(/BigInt/) });
  });

  it('refuses a concurrency below 1', () => {
    expect(() => runner({}, { concurrency: 0 })).toThrow("Expected concurrency to be a whole number of at least 1, got '0'");
  });
});

describe('JobRunner: which failures are retried', () => {
  const PERMANENT: ErrorCode[] = ['MANIFEST_UNKNOWN', 'BLOB_UNKNOWN', 'NAME_UNKNOWN', 'TAG_INVALID', 'NAME_INVALID', 'DENIED', 'UNAUTHORIZED', 'BAD_REQUEST'];
  const TRANSIENT: ErrorCode[] = ['UNAVAILABLE', 'TOOMANYREQUESTS', 'BAD_GATEWAY', 'UNKNOWN'];

  it('fails a job at once when the upstream gave an answer asking again cannot change (404, 400, 401/403)', async () => {
    for (const code of PERMANENT) {
      let calls = 0;
      const r = runner({
        prefetch: async () => {
          calls++;
          throw new RegistryError(code, { message: `${code} from upstream`, upstreamStatus: 404 });
        },
      });
      r.start();
      const { id } = r.enqueue('prefetch', code);
      await r.onIdle();
      expect(store.get(id), code).toMatchObject({ state: 'failed', attempts: 1, lastError: `${code} from upstream`, finishedAt: time.now() });
      expect(calls, code).toBe(1);
      await r.stop();
    }
  });

  it('retries outages, 5xx, 429 and network errors with backoff', async () => {
    const errors: unknown[] = [
      ...TRANSIENT.map((code) => new RegistryError(code, { upstreamStatus: 503 })),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
      new Error('socket hang up'),
    ];
    for (const err of errors) {
      const r = runner({ prefetch: async () => Promise.reject(err) });
      r.start();
      const { id } = r.enqueue('prefetch', String(err));
      await r.onIdle();
      expect(store.get(id), String(err)).toMatchObject({ state: 'queued', attempts: 1, runAfter: time.now() + 100 });
      await r.stop();
    }
  });

  it('classifies by the error code, not by the message', () => {
    expect(isTransient(new RegistryError('MANIFEST_UNKNOWN', { message: 'upstream 503' }))).toBe(false);
    expect(isTransient(new RegistryError('UNAVAILABLE', { message: 'not found' }))).toBe(true);
    expect(isTransient(new TypeError('x is undefined'))).toBe(true);
  });

  it('takes another classification when given one', async () => {
    const r = runner({ gc: async () => Promise.reject(new Error('disk on fire')) }, { retryable: () => false });
    r.start();
    const { id } = r.enqueue('gc', null);
    await r.onIdle();
    expect(store.get(id)).toMatchObject({ state: 'failed', attempts: 1 });
  });
});

describe('JobRunner: progress', () => {
  it('shows progress through get() while the job runs, and the last report once it ends', async () => {
    const reported = deferred();
    const finish = deferred();
    const r = runner({
      prefetch: async (_job, { progress }) => {
        progress({ bytes: 100, total: 300 });
        progress({ bytes: 200, total: 300 }); // within the interval: held back
        reported.resolve();
        await finish.promise;
        progress({ bytes: 300, total: 300 });
        return null;
      },
    });
    r.start();
    const { id } = r.enqueue('prefetch', null);
    await reported.promise;
    expect(store.get(id)).toMatchObject({ state: 'running', progress: { bytes: 100, total: 300 } });
    finish.resolve();
    await r.onIdle();
    expect(store.get(id)).toMatchObject({ state: 'done', progress: { bytes: 300, total: 300 } });
  });
});

describe('JobRunner: concurrency and priority', () => {
  it('never runs more handlers at once than its concurrency', async () => {
    let now = 0;
    let peak = 0;
    const r = runner(
      {
        prefetch: async () => {
          peak = Math.max(peak, ++now);
          await tick();
          now--;
        },
      },
      { concurrency: 2 },
    );
    r.start();
    const ids = Array.from({ length: 6 }, () => r.enqueue('prefetch', null).id);
    expect(r.running).toBe(2);
    await r.onIdle();
    expect(peak).toBe(2);
    expect(ids.map((id) => store.get(id)?.state)).toEqual(Array(6).fill('done'));
  });

  it('runs evict and delete before prefetch and refresh, and gc last, when all are queued', async () => {
    const order: string[] = [];
    const record: JobHandler = async (job: Job) => void order.push(`${job.type}:${String(job.payload)}`);
    store.enqueue('gc', 1);
    store.enqueue('prefetch', 1);
    store.enqueue('refresh', 1);
    store.enqueue('delete', 1);
    store.enqueue('prefetch', 2);
    store.enqueue('evict', 1);
    const r = runner({ gc: record, prefetch: record, refresh: record, delete: record, evict: record }, { concurrency: 1 });
    r.start();
    await r.onIdle();
    expect(order).toEqual(['evict:1', 'delete:1', 'prefetch:1', 'refresh:1', 'prefetch:2', 'gc:1']);
  });
});

describe('JobRunner: restarts', () => {
  it('runs a job that was running and one that was queued when the process died, after restart', async () => {
    const hanging = deferred();
    const dying = runner({ prefetch: () => hanging.promise.then(() => 'never recorded') }, { concurrency: 1 });
    dying.start();
    const running = dying.enqueue('prefetch', 'a');
    const queued = dying.enqueue('prefetch', 'b');
    expect(store.get(running.id)?.state).toBe('running');
    expect(store.get(queued.id)?.state).toBe('queued');
    db.close(); // the process dies: no stop(), the row stays running

    store = new JobStore(tmp.open(), { now: time.now });
    const ran: unknown[] = [];
    const restarted = runner({ prefetch: async (job) => void ran.push(job.payload) }, { concurrency: 1 });
    restarted.start();
    await restarted.onIdle();
    expect(ran).toEqual(['a', 'b']);
    expect(store.get(running.id)).toMatchObject({ state: 'done', attempts: 2 });
    expect(store.get(queued.id)).toMatchObject({ state: 'done', attempts: 1 });

    hanging.resolve(); // the dead runner's handler returning later changes nothing
    await tick();
    expect(store.get(running.id)?.result).toBeNull();
  });

  it('stop() aborts handlers still running after the grace period and leaves their jobs queued, attempt not counted', async () => {
    const started = deferred();
    let aborted: unknown;
    const r = runner(
      {
        prefetch: (_job, { signal }) =>
          new Promise((_resolve, reject) => {
            started.resolve();
            signal.addEventListener('abort', () => {
              aborted = signal.reason;
              reject(signal.reason as Error);
            });
          }),
      },
      { concurrency: 1 },
    );
    r.start();
    const interrupted = r.enqueue('prefetch', 'slow');
    const waiting = r.enqueue('prefetch', 'next');
    await started.promise;
    await r.stop(5);

    expect(aborted).toBeInstanceOf(Error);
    expect(r.running).toBe(0);
    expect(store.get(interrupted.id)).toMatchObject({ state: 'queued', attempts: 0, lastError: null });
    expect(store.get(waiting.id)).toMatchObject({ state: 'queued', attempts: 0 });

    const ran: unknown[] = [];
    const next = runner({ prefetch: async (job) => void ran.push(job.payload) });
    next.start();
    await next.onIdle();
    expect(ran).toEqual(['slow', 'next']);
  });

  it('stop() lets a handler that finishes within the grace period complete its job', async () => {
    const finish = deferred();
    const r = runner({ delete: async () => finish.promise.then(() => 'deleted') });
    r.start();
    const { id } = r.enqueue('delete', null);
    const stopped = r.stop(1000);
    finish.resolve();
    await stopped;
    expect(store.get(id)).toMatchObject({ state: 'done', result: 'deleted' });
  });

  it('claims nothing after stop()', async () => {
    const r = runner({ gc: async () => null });
    r.start();
    await r.stop();
    const { id } = r.enqueue('gc', null);
    await r.onIdle();
    expect(store.get(id)?.state).toBe('queued');
    expect(() => r.start()).toThrow(/cannot start again/);
  });
});
