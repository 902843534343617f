import { describe, expect, it } from 'vitest';
import { UrlBreaker } from '../../../src/upstream/url-breaker.ts';

const A = 'http://a.test';
const B = 'http://b.test';
const C = 'http://c.test';

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('UrlBreaker', () => {
  it('tries the URLs in config order while none has failed', () => {
    const b = new UrlBreaker([A, B, C], 30_000, clock().now);
    expect(b.order()).toEqual([0, 1, 2]);
    expect(b.active).toBe(A);
  });

  it('skips a failed URL for the back-off, then puts it first again', () => {
    const c = clock();
    const b = new UrlBreaker([A, B], 30_000, c.now);
    b.failed(0, 'connection refused');
    expect(b.order()).toEqual([1]);
    expect(b.active).toBe(B);
    expect(b.states()[0]).toEqual({ url: A, state: 'down', failures: 1, retryAt: 1_030_000, lastError: 'connection refused' });
    c.advance(29_999);
    expect(b.active).toBe(B);
    c.advance(1);
    expect(b.order()).toEqual([0, 1]);
    expect(b.active).toBe(A);
  });

  it('restarts the back-off when a URL fails again after it ended', () => {
    const c = clock();
    const b = new UrlBreaker([A, B], 10_000, c.now);
    b.failed(0, 'timeout');
    c.advance(10_000);
    b.failed(0, 'timeout');
    expect(b.states()[0]).toMatchObject({ state: 'down', failures: 2, retryAt: c.now() + 10_000 });
  });

  it('forgets failures once a URL answers', () => {
    const b = new UrlBreaker([A, B], 10_000, clock().now);
    b.failed(0, 'answered 503');
    b.succeeded(0);
    expect(b.states()[0]).toMatchObject({ state: 'up', failures: 0, retryAt: 0 });
    expect(b.order()).toEqual([0, 1]);
  });

  it('offers only the URL whose back-off ends first when every URL is in back-off', () => {
    const c = clock();
    const b = new UrlBreaker([A, B, C], 10_000, c.now);
    b.failed(1, 'x');
    c.advance(1);
    b.failed(0, 'x');
    b.failed(2, 'x');
    expect(b.order()).toEqual([1]);
    expect(b.active).toBe(B);
  });

  it('keeps trying a single URL however often it fails', () => {
    const b = new UrlBreaker([A], 10_000, clock().now);
    b.failed(0, 'x');
    expect(b.order()).toEqual([0]);
  });
});
