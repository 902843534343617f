/**
 * @module test/unit/jobs/job-store
 * The durable job rows against a real SQLite file: enqueue with dedupe, claim order (priority,
 * age, runAfter), the transitions out of `running`, start-up recovery after a crash, and the
 * counts and pruning that keep the table observable and bounded.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import type { Database as DB } from 'better-sqlite3';
import { JobStore } from '../../../src/jobs/job-store.ts';
import { Metadata } from '../../../src/cache/metadata/metadata.ts';
import { clock, tempDb, type TempDb } from './temp-db.ts';

let tmp: TempDb;
let db: DB;
let time: ReturnType<typeof clock>;
let store: JobStore;

beforeEach(() => {
  tmp = tempDb();
  db = tmp.open();
  time = clock();
  store = new JobStore(db, { now: time.now, maxAttempts: 3 });
});

afterEach(() => tmp.cleanup());

describe('JobStore: enqueue', () => {
  it('stores a queued job with its payload and reads it back by id', () => {
    const job = store.enqueue('prefetch', { digest: 'sha256:aa', upstream: 'hub' });
    expect(job).toEqual({
      id: job.id,
      type: 'prefetch',
      key: null,
      payload: { digest: 'sha256:aa', upstream: 'hub' },
      state: 'queued',
      attempts: 0,
      maxAttempts: 3,
      lastError: null,
      runAfter: time.now(),
      createdAt: time.now(),
      startedAt: null,
      finishedAt: null,
      progress: null,
      result: null,
    });
    expect(store.get(job.id)).toEqual(job);
    expect(store.get(job.id + 1)).toBeUndefined();
  });

  it('returns the live job instead of a duplicate when the same type and key are enqueued again', () => {
    const first = store.enqueue('prefetch', { n: 1 }, { key: 'sha256:aa' });
    expect(store.enqueue('prefetch', { n: 2 }, { key: 'sha256:aa' })).toEqual(first);

    store.claim(time.now(), 1);
    const whileRunning = store.enqueue('prefetch', { n: 3 }, { key: 'sha256:aa' });
    expect(whileRunning.id).toBe(first.id);
    expect(whileRunning.state).toBe('running');

    expect(store.enqueue('evict', null, { key: 'sha256:aa' }).id).not.toBe(first.id);
    expect(store.enqueue('prefetch', null, { key: 'sha256:bb' }).id).not.toBe(first.id);
    expect(store.depth()).toBe(3);
  });

  it('enqueues a new job for a key once the previous one finished', () => {
    const first = store.enqueue('refresh', null, { key: 'docker.io/library/alpine:3.19' });
    store.claim(time.now(), 1);
    store.complete(first.id);
    const second = store.enqueue('refresh', null, { key: 'docker.io/library/alpine:3.19' });
    expect(second.id).not.toBe(first.id);
    expect(second.state).toBe('queued');
  });

  it('never gives a pruned id to a new job, since ids are handed out through the admin API', () => {
    const first = store.enqueue('gc', null);
    store.claim(time.now(), 1);
    store.complete(first.id);
    time.advance(10);
    expect(store.prune(0)).toBe(1);
    expect(store.enqueue('gc', null).id).toBeGreaterThan(first.id);
  });

  it('refuses an unknown job type and a maxAttempts below 1', () => {
    expect(() => store.enqueue('backup' as never, null)).toThrow(/Expected a job type .*got 'backup'/);
    expect(() => store.enqueue('gc', null, { maxAttempts: 0 })).toThrow(/Expected maxAttempts .* got '0'/);
  });
});

describe('JobStore: claim', () => {
  it('claims evict and delete before prefetch and refresh, gc last, oldest first within a type', () => {
    const gc = store.enqueue('gc', null);
    const prefetch1 = store.enqueue('prefetch', null);
    const refresh = store.enqueue('refresh', null);
    const del = store.enqueue('delete', null);
    const prefetch2 = store.enqueue('prefetch', null);
    const evict = store.enqueue('evict', null);
    expect(store.claim(time.now(), 10).map((j) => j.id)).toEqual([evict.id, del.id, prefetch1.id, refresh.id, prefetch2.id, gc.id]);
  });

  it('claims at most the limit, marks them running with the attempt counted, and never claims a running job again', () => {
    const jobs = [1, 2, 3].map(() => store.enqueue('prefetch', null));
    time.advance(5);
    const claimed = store.claim(time.now(), 2);
    expect(claimed.map((j) => [j.id, j.state, j.attempts, j.startedAt])).toEqual([
      [jobs[0]!.id, 'running', 1, time.now()],
      [jobs[1]!.id, 'running', 1, time.now()],
    ]);
    expect(store.claim(time.now(), 5).map((j) => j.id)).toEqual([jobs[2]!.id]);
    expect(store.claim(time.now(), 5)).toEqual([]);
    expect(store.claim(time.now(), 0)).toEqual([]);
  });

  it('does not claim a job before its runAfter', () => {
    const later = store.enqueue('evict', null, { runAfter: time.now() + 1000 });
    const now = store.enqueue('prefetch', null);
    expect(store.claim(time.now(), 5).map((j) => j.id)).toEqual([now.id]);
    time.advance(999);
    expect(store.claim(time.now(), 5)).toEqual([]);
    time.advance(1);
    expect(store.claim(time.now(), 5).map((j) => j.id)).toEqual([later.id]);
  });
});

describe('JobStore: finishing', () => {
  it('completes a running job with its result', () => {
    const job = store.enqueue('delete', { ref: 'library/alpine:3.19' });
    expect(store.complete(job.id)).toBeUndefined();
    store.claim(time.now(), 1);
    time.advance(20);
    const done = store.complete(job.id, { blobsRemoved: 3 });
    expect(done).toMatchObject({ state: 'done', result: { blobsRemoved: 3 }, finishedAt: time.now() });
    expect(store.get(job.id)).toEqual(done);
    expect(store.complete(job.id, { again: true })).toBeUndefined();
  });

  it('puts a failed attempt back in the queue at retryAt with its error, until the attempts are used up', () => {
    const job = store.enqueue('prefetch', null);
    store.claim(time.now(), 1);
    const retry = store.fail(job.id, new Error('upstream said 503'), { retryAt: time.now() + 100 });
    expect(retry).toMatchObject({ state: 'queued', attempts: 1, runAfter: time.now() + 100, lastError: 'upstream said 503', finishedAt: null });

    time.advance(100);
    store.claim(time.now(), 1);
    store.fail(job.id, new Error('upstream said 502'), { retryAt: time.now() + 200 });
    time.advance(200);
    store.claim(time.now(), 1);
    const failed = store.fail(job.id, new Error('upstream said 500'), { retryAt: time.now() + 400 });
    expect(failed).toMatchObject({ state: 'failed', attempts: 3, lastError: 'upstream said 500', finishedAt: time.now() });
    expect(store.claim(time.now() + 1000, 1)).toEqual([]);
  });

  it('fails a job for good when no retry time is given', () => {
    const job = store.enqueue('gc', null);
    store.claim(time.now(), 1);
    expect(store.fail(job.id, 'not an Error')).toMatchObject({ state: 'failed', attempts: 1, lastError: 'not an Error' });
  });

  it('ignores a failure reported for a job that is not running', () => {
    const job = store.enqueue('gc', null);
    expect(store.fail(job.id, new Error('late'))).toBeUndefined();
    expect(store.get(job.id)).toMatchObject({ state: 'queued', lastError: null });
  });

  it('keeps the last error after a later attempt succeeds', () => {
    const job = store.enqueue('prefetch', null);
    store.claim(time.now(), 1);
    store.fail(job.id, new Error('timeout'), { retryAt: time.now() });
    store.claim(time.now(), 1);
    expect(store.complete(job.id, 'ok')).toMatchObject({ state: 'done', attempts: 2, lastError: 'timeout', result: 'ok' });
  });

  it('releases an interrupted job back to the queue without counting the attempt', () => {
    const job = store.enqueue('prefetch', null);
    store.claim(time.now(), 1);
    store.setProgress(job.id, { bytes: 10 });
    expect(store.release(job.id)).toMatchObject({ state: 'queued', attempts: 0, progress: null });
    expect(store.release(job.id)).toBeUndefined();
  });
});

describe('JobStore: progress', () => {
  it('shows the progress of a running job through get()', () => {
    const job = store.enqueue('prefetch', null);
    store.claim(time.now(), 1);
    store.setProgress(job.id, { bytes: 512, total: 2048 });
    expect(store.get(job.id)?.progress).toEqual({ bytes: 512, total: 2048 });
  });

  it('ignores progress for a job that is not running', () => {
    const job = store.enqueue('prefetch', null);
    store.setProgress(job.id, { bytes: 1 });
    expect(store.get(job.id)?.progress).toBeNull();
  });

  it('starts a new attempt with no progress from the previous one', () => {
    const job = store.enqueue('prefetch', null);
    store.claim(time.now(), 1);
    store.setProgress(job.id, { bytes: 1 });
    store.fail(job.id, new Error('x'), { retryAt: time.now() });
    store.claim(time.now(), 1);
    expect(store.get(job.id)?.progress).toBeNull();
  });
});

describe('JobStore: start-up after a crash', () => {
  it('requeues jobs left running by a process that died, keeping the attempt counted', () => {
    const a = store.enqueue('prefetch', null);
    const b = store.enqueue('delete', null);
    const waiting = store.enqueue('gc', null);
    store.claim(time.now(), 2);

    const restarted = new JobStore(tmp.open(), { now: time.now });
    expect(restarted.requeueInterrupted()).toEqual({ requeued: 2, failed: 0 });
    expect([a, b, waiting].map((j) => restarted.get(j.id))).toMatchObject([
      { state: 'queued', attempts: 1 },
      { state: 'queued', attempts: 1 },
      { state: 'queued', attempts: 0 },
    ]);
    expect(restarted.claim(time.now(), 5)).toHaveLength(3);
  });

  it('runs a job interrupted on its last attempt once more, then fails it rather than crash-loop', () => {
    const job = store.enqueue('prefetch', null, { maxAttempts: 1 });
    store.claim(time.now(), 1);
    expect(store.requeueInterrupted()).toEqual({ requeued: 1, failed: 0 });
    store.claim(time.now(), 1);
    expect(store.requeueInterrupted()).toEqual({ requeued: 0, failed: 1 });
    expect(store.get(job.id)).toMatchObject({ state: 'failed', attempts: 2, finishedAt: time.now() });
    expect(store.get(job.id)?.lastError).toMatch(/process exited while this job was running \(attempt 2 of 1\)/);
  });
});

describe('JobStore: listing, counts and pruning', () => {
  it('lists newest first, filtered by state and type, a page at a time', () => {
    const ids = ['prefetch', 'evict', 'prefetch', 'gc', 'prefetch'].map((t) => store.enqueue(t as 'prefetch', null).id);
    store.claim(time.now(), 1); // the evict
    expect(store.list().map((j) => j.id)).toEqual([...ids].reverse());
    expect(store.list({ type: 'prefetch' }).map((j) => j.id)).toEqual([ids[4], ids[2], ids[0]]);
    expect(store.list({ state: 'running' }).map((j) => j.id)).toEqual([ids[1]]);
    expect(store.list({ state: 'queued', type: 'gc' }).map((j) => j.id)).toEqual([ids[3]]);
    expect(store.list({ limit: 2, offset: 1 }).map((j) => j.id)).toEqual([ids[3], ids[2]]);
  });

  it('counts every type and state, zeros included, and the depth of queued plus running', () => {
    store.enqueue('prefetch', null);
    store.enqueue('prefetch', null);
    const del = store.enqueue('delete', null);
    store.enqueue('evict', null, { runAfter: time.now() + 1000 });
    store.claim(time.now(), 1); // the delete
    store.complete(del.id);
    store.claim(time.now(), 1); // a prefetch

    const counts = store.counts();
    expect(Object.keys(counts).sort()).toEqual(['delete', 'evict', 'gc', 'prefetch', 'refresh', 'sync']);
    expect(counts.prefetch).toEqual({ queued: 1, running: 1, done: 0, failed: 0 });
    expect(counts.delete).toEqual({ queued: 0, running: 0, done: 1, failed: 0 });
    expect(counts.evict).toEqual({ queued: 1, running: 0, done: 0, failed: 0 });
    expect(counts.gc).toEqual({ queued: 0, running: 0, done: 0, failed: 0 });
    expect(store.depth()).toBe(3);
  });

  it('prunes done and failed jobs that finished before the cut-off and nothing else', () => {
    const old = [store.enqueue('gc', null), store.enqueue('prefetch', null)];
    store.claim(time.now(), 2);
    store.complete(old[0]!.id);
    store.fail(old[1]!.id, new Error('gone'));
    time.advance(60_000);
    const recent = store.enqueue('delete', null);
    store.claim(time.now(), 1);
    store.complete(recent.id);
    const queued = store.enqueue('evict', null);
    const running = store.enqueue('refresh', null);
    store.claim(time.now(), 1);

    time.advance(1000);
    expect(store.prune(30_000)).toBe(2);
    expect(store.list().map((j) => j.id).sort()).toEqual([recent.id, queued.id, running.id].sort());
  });
});

describe('JobStore: in the app database', () => {
  it('adds its table beside the cache metadata without disturbing it', () => {
    const file = `${tmp.file}.meta`;
    const userVersion = () => {
      const raw = new Database(file, { readonly: true });
      try {
        return raw.pragma('user_version', { simple: true });
      } finally {
        raw.close();
      }
    };
    const metadata = new Metadata(file, { flushIntervalMs: 3_600_000 });
    try {
      const version = userVersion();
      const jobs = new JobStore(metadata.connectionForJobs());
      new JobStore(metadata.connectionForJobs()); // opening twice is harmless
      jobs.enqueue('gc', null);
      metadata.putBlob({ digest: `sha256:${'a'.repeat(64)}`, size: 1, mediaType: null });
      expect(userVersion()).toBe(version);
      expect(jobs.depth()).toBe(1);
      expect(metadata.getBlob(`sha256:${'a'.repeat(64)}`)?.size).toBe(1);
    } finally {
      metadata.close();
    }
  });
});
