/**
 * @module test/unit/auth/failure-limiter
 * Failed authentications per address: free at first, then a doubling backoff, forgotten on success.
 */
import { describe, expect, it } from 'vitest';
import { FailureLimiter } from '../../../src/auth/failure-limiter.ts';

describe('FailureLimiter', () => {
  it('blocks an address after its free failures, for twice as long after each further one', () => {
    let now = 0;
    const limiter = new FailureLimiter({ free: 2, baseMs: 1000, maxMs: 10_000, now: () => now });
    limiter.fail('10.0.0.1');
    limiter.fail('10.0.0.1');
    expect(limiter.blockedFor('10.0.0.1')).toBeUndefined();
    limiter.fail('10.0.0.1');
    expect(limiter.blockedFor('10.0.0.1')).toBe(1);
    expect(limiter.blockedFor('10.0.0.2')).toBeUndefined();
    now += 1000;
    expect(limiter.blockedFor('10.0.0.1')).toBeUndefined();
    limiter.fail('10.0.0.1');
    expect(limiter.blockedFor('10.0.0.1')).toBe(2);
    for (let i = 0; i < 10; i++) limiter.fail('10.0.0.1');
    expect(limiter.blockedFor('10.0.0.1')).toBe(10);
  });

  it('forgets an address once it authenticates', () => {
    const limiter = new FailureLimiter({ free: 0, now: () => 0 });
    limiter.fail('10.0.0.1');
    expect(limiter.blockedFor('10.0.0.1')).toBe(1);
    limiter.succeed('10.0.0.1');
    expect(limiter.blockedFor('10.0.0.1')).toBeUndefined();
  });
});
