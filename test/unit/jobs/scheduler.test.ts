/**
 * @module test/unit/jobs/scheduler
 * Periodic tasks under fake timers: when the first run happens, that runs of one task never
 * overlap, that a failing run is logged and the schedule goes on, and that stop() cancels
 * everything and waits for a run under way.
 */
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Scheduler } from '../../../src/jobs/scheduler.ts';
import { createLogger, silentLogger } from '../../../src/util/logger.ts';

const schedulers: Scheduler[] = [];

function scheduler(log = silentLogger): Scheduler {
  const s = new Scheduler({ log });
  schedulers.push(s);
  return s;
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(async () => {
  const stopped = Promise.all(schedulers.splice(0).map((s) => s.stop()));
  // A run may be mid-sleep on a fake timer; stop() waits for it.
  await vi.runOnlyPendingTimersAsync();
  await stopped;
  vi.useRealTimers();
});

describe('Scheduler', () => {
  it('runs a task first after one interval, then every interval', async () => {
    let runs = 0;
    scheduler().every('gc', 1000, () => runs++);
    await vi.advanceTimersByTimeAsync(999);
    expect(runs).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(3000);
    expect(runs).toBe(4);
  });

  it('runs a task right away when asked to', async () => {
    let runs = 0;
    scheduler().every('refresh', 1000, () => runs++, { immediately: true });
    await vi.advanceTimersByTimeAsync(0);
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(runs).toBe(2);
  });

  it('never overlaps two runs of the same task, timing the next from the end of the last', async () => {
    let active = 0;
    let peak = 0;
    const starts: number[] = [];
    scheduler().every('slow', 100, async () => {
      starts.push(Date.now());
      peak = Math.max(peak, ++active);
      await new Promise((r) => setTimeout(r, 250));
      active--;
    });
    const t0 = Date.now();
    await vi.advanceTimersByTimeAsync(1000);
    expect(peak).toBe(1);
    expect(starts.map((t) => t - t0)).toEqual([100, 450, 800]);
  });

  it('logs a failing run and keeps the schedule going', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    let runs = 0;
    scheduler(createLogger('error', sink)).every('prune', 100, () => {
      runs++;
      throw new Error('database is locked');
    });
    await vi.advanceTimersByTimeAsync(200);
    expect(runs).toBe(2);
    const logged = lines.map((l) => JSON.parse(l) as { task: string; msg: string; err: { message: string } });
    expect(logged).toHaveLength(2);
    expect(logged[0]).toMatchObject({ task: 'prune', msg: 'scheduled task failed', err: { message: 'database is locked' } });
  });

  it('treats an interval of 0 as off', async () => {
    let runs = 0;
    scheduler().every('gc', 0, () => runs++, { immediately: true });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(runs).toBe(0);
  });

  it('refuses a second task with the same name and a negative interval', () => {
    const s = scheduler();
    s.every('gc', 1000, () => undefined);
    expect(() => s.every('gc', 1000, () => undefined)).toThrow("A task named 'gc' is already scheduled");
    expect(() => s.every('refresh', -1, () => undefined)).toThrow(/Expected the interval of 'refresh' to be a duration/);
  });

  it('stop() cancels future runs and waits for the run under way', async () => {
    let runs = 0;
    let finished = false;
    const s = scheduler();
    s.every('slow', 100, async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 50));
      finished = true;
    });
    await vi.advanceTimersByTimeAsync(120);
    let stopped = false;
    const stopping = s.stop().then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(10);
    expect(stopped).toBe(false);
    await vi.advanceTimersByTimeAsync(40);
    await stopping;
    expect(finished).toBe(true);
    await vi.advanceTimersByTimeAsync(1000);
    expect(runs).toBe(1);
  });
});
