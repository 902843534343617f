/**
 * @module test/unit/cache/single-flight
 * Concurrent work deduplicated by key: while a call for a key runs, later callers join it and
 * see the same result or the same failure; once it settles the key is free and the next call
 * runs the work again (a failure is never cached). The work gets no caller's AbortSignal
 * (distribution's context.WithoutCancel; lru-cache's fetch() lets the first caller's signal
 * govern everyone, which is the mistake this avoids).
 */
import { describe, expect, it, vi } from 'vitest';
import { SingleFlight } from '../../../src/util/single-flight.ts';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('SingleFlight', () => {
  it('runs concurrent calls for one key once and gives every caller the result', async () => {
    const flights = new SingleFlight<string>();
    const gate = deferred<string>();
    const work = vi.fn(() => gate.promise);
    const calls = [flights.do('k', work), flights.do('k', work), flights.do('k', work)];
    expect(work).toHaveBeenCalledTimes(1);
    expect(flights.size).toBe(1);
    gate.resolve('filled');
    expect(await Promise.all(calls)).toEqual(['filled', 'filled', 'filled']);
  });

  it('calls the work with no arguments, so no caller\'s signal can reach it', async () => {
    const flights = new SingleFlight<number>();
    const work = vi.fn(async () => 1);
    await flights.do('k', work);
    expect(work).toHaveBeenCalledWith();
  });

  it('runs different keys independently', async () => {
    const flights = new SingleFlight<string>();
    const a = deferred<string>();
    const b = deferred<string>();
    const pa = flights.do('a', () => a.promise);
    const pb = flights.do('b', () => b.promise);
    expect(flights.size).toBe(2);
    b.resolve('B');
    expect(await pb).toBe('B');
    expect(flights.size).toBe(1);
    a.resolve('A');
    expect(await pa).toBe('A');
  });

  it('frees the key once the work settles, so the next call runs again', async () => {
    const flights = new SingleFlight<number>();
    let runs = 0;
    const work = async () => ++runs;
    expect(await flights.do('k', work)).toBe(1);
    expect(flights.size).toBe(0);
    expect(await flights.do('k', work)).toBe(2);
  });

  it('lets a caller arriving after the work settled start a fresh run, not reuse the old result', async () => {
    const flights = new SingleFlight<number>();
    const first = deferred<number>();
    const p1 = flights.do('k', () => first.promise);
    first.resolve(1);
    await p1;
    const second = deferred<number>();
    const p2 = flights.do('k', () => second.promise);
    second.resolve(2);
    expect(await p2).toBe(2);
  });

  it('shares a failure with every caller of that run', async () => {
    const flights = new SingleFlight<string>();
    const gate = deferred<string>();
    const work = vi.fn(() => gate.promise);
    const calls = [flights.do('k', work), flights.do('k', work)];
    const boom = new Error('upstream reset');
    gate.reject(boom);
    const results = await Promise.allSettled(calls);
    expect(results).toEqual([
      { status: 'rejected', reason: boom },
      { status: 'rejected', reason: boom },
    ]);
    expect(work).toHaveBeenCalledTimes(1);
  });

  it('does not remember a failure: the next call runs the work again', async () => {
    const flights = new SingleFlight<string>();
    const work = vi.fn<() => Promise<string>>().mockRejectedValueOnce(new Error('first try fails')).mockResolvedValueOnce('second try works');
    await expect(flights.do('k', work)).rejects.toThrow('first try fails');
    expect(flights.size).toBe(0);
    await expect(flights.do('k', work)).resolves.toBe('second try works');
    expect(work).toHaveBeenCalledTimes(2);
  });

  // BUG (src/util/single-flight.ts, not owned here): when `work` throws synchronously instead
  // of returning a rejected promise, the async wrapper's `finally` runs before the promise is
  // stored, so the rejected promise stays in the map for good and every later call for the key
  // gets the stale failure without running. Remove `.fails` once that is fixed.
  it('runs the work again after it threw synchronously', async () => {
    const flights = new SingleFlight<string>();
    let runs = 0;
    const work = (): Promise<string> => {
      runs++;
      if (runs === 1) throw new Error('threw before returning a promise');
      return Promise.resolve('ok');
    };
    await expect(flights.do('k', work)).rejects.toThrow('threw before returning a promise');
    expect(flights.size).toBe(0);
    await expect(flights.do('k', work)).resolves.toBe('ok');
  });
});

describe('SingleFlight.hold', () => {
  it('keeps sharing a resolved result until the work releases it, then runs the work again', async () => {
    const flights = new SingleFlight<string>();
    let release!: () => void;
    const work = vi.fn(async (r: () => void) => {
      release = r;
      return 'fill';
    });
    expect(await flights.hold('k', work)).toBe('fill');
    expect(await flights.hold('k', work)).toBe('fill');
    expect(work).toHaveBeenCalledTimes(1);
    expect(flights.get('k')).toBeDefined();
    release();
    expect(flights.get('k')).toBeUndefined();
    await flights.hold('k', work);
    expect(work).toHaveBeenCalledTimes(2);
  });

  it('drops a rejected call at once, before its callers see the failure', async () => {
    const flights = new SingleFlight<string>();
    const failing = flights.hold('k', async () => {
      throw new Error('refused');
    });
    await expect(failing.catch((err: Error) => (flights.get('k') === undefined ? err.message : 'still held'))).resolves.toBe('refused');
  });

  it('lets a stale release leave a newer call for the same key alone', async () => {
    const flights = new SingleFlight<string>();
    const releases: Array<() => void> = [];
    const work = async (r: () => void) => {
      releases.push(r);
      return `call ${releases.length}`;
    };
    await flights.hold('k', work);
    releases[0]!();
    const newer = flights.hold('k', work);
    expect(await newer).toBe('call 2');
    releases[0]!();
    expect(flights.get('k')).toBe(newer);
  });
});
