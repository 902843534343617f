import { describe, expect, it } from 'vitest';
import { RateLimitBudget, parseRateLimitValue } from '../../../src/upstream/rate-limit.ts';

describe('parseRateLimitValue', () => {
  it('reads a count and its window as Docker Hub sends them', () => {
    expect(parseRateLimitValue('76;w=21600')).toEqual({ value: 76, window: 21600 });
  });

  it('reads a bare count without a window', () => {
    expect(parseRateLimitValue('100')).toEqual({ value: 100, window: null });
  });

  it('takes the first of repeated headers', () => {
    expect(parseRateLimitValue('5;w=60, 9;w=60')).toEqual({ value: 5, window: 60 });
  });

  it('ignores values that are not counts', () => {
    expect(parseRateLimitValue(undefined)).toBeUndefined();
    expect(parseRateLimitValue('')).toBeUndefined();
    expect(parseRateLimitValue('-3;w=60')).toBeUndefined();
    expect(parseRateLimitValue('lots')).toBeUndefined();
  });
});

describe('RateLimitBudget', () => {
  function budget() {
    let t = 5_000_000;
    return { b: new RateLimitBudget(() => t), advance: (ms: number) => (t += ms), now: () => t };
  }

  it('records limit, remaining and window from a response', () => {
    const { b, now } = budget();
    b.observe({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '76;w=21600' });
    expect(b.snapshot).toEqual({ limit: 100, remaining: 76, windowSeconds: 21600, observedAt: now() });
  });

  it('keeps the last report when a response carries no rate-limit headers', () => {
    const { b } = budget();
    b.observe({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '76;w=21600' });
    b.observe({ 'content-type': 'application/json' });
    expect(b.snapshot.remaining).toBe(76);
  });

  it('pauses background work while the remaining count is under the floor, until the window ends', () => {
    const { b, advance, now } = budget();
    b.observe({ 'ratelimit-limit': '100;w=600', 'ratelimit-remaining': '9;w=600' });
    const end = now() + 600_000;
    expect(b.pausedUntil(10)).toBe(end);
    advance(599_999);
    expect(b.pausedUntil(10)).toBe(end);
    advance(1);
    expect(b.pausedUntil(10)).toBeUndefined();
  });

  it('lets background work go on at or above the floor, with a floor of 0, or without a report', () => {
    const { b } = budget();
    expect(b.pausedUntil(10)).toBeUndefined();
    b.observe({ 'ratelimit-remaining': '10;w=600' });
    expect(b.pausedUntil(10)).toBeUndefined();
    b.observe({ 'ratelimit-remaining': '0;w=600' });
    expect(b.pausedUntil(0)).toBeUndefined();
    expect(b.pausedUntil(1)).toBeDefined();
  });

  it('ends the pause when a newer report shows the budget back above the floor', () => {
    const { b } = budget();
    b.observe({ 'ratelimit-remaining': '2;w=21600' });
    expect(b.pausedUntil(10)).toBeDefined();
    b.observe({ 'ratelimit-remaining': '50;w=21600' });
    expect(b.pausedUntil(10)).toBeUndefined();
  });
});
