import { describe, expect, it } from 'vitest';
import { CsrfTokens } from '../../../src/console/csrf.ts';

function tokens(key = Buffer.alloc(32, 7)) {
  let now = 1_000_000;
  return { csrf: new CsrfTokens({ key, now: () => now }), advance: (ms: number) => (now += ms) };
}

describe('console CSRF tokens', () => {
  it('accepts a token for the session it was issued to until it expires', () => {
    const { csrf, advance } = tokens();
    const token = csrf.issue('session-a', 1_060_000);
    expect(csrf.verify('session-a', token)).toBe(true);
    advance(59_999);
    expect(csrf.verify('session-a', token)).toBe(true);
    advance(1);
    expect(csrf.verify('session-a', token)).toBe(false);
  });

  it("refuses another session's token", () => {
    const { csrf } = tokens();
    expect(csrf.verify('session-b', csrf.issue('session-a', 2_000_000))).toBe(false);
  });

  it('refuses a token made with another key (another process)', () => {
    const a = tokens(Buffer.alloc(32, 1)).csrf;
    const b = tokens(Buffer.alloc(32, 2)).csrf;
    expect(b.verify('s', a.issue('s', 2_000_000))).toBe(false);
  });

  it('refuses a token whose expiry was pushed later by hand', () => {
    const { csrf, advance } = tokens();
    const token = csrf.issue('s', 1_001_000);
    const [, mac] = token.split('.');
    advance(5000);
    expect(csrf.verify('s', `${(9_000_000).toString(36)}.${mac}`)).toBe(false);
  });

  it('refuses missing, empty, malformed and oversized tokens', () => {
    const { csrf } = tokens();
    for (const bad of [undefined, '', '.', 'abc', 'zz.', '-1.abc', `${'a'.repeat(300)}.x`]) expect(csrf.verify('s', bad)).toBe(false);
    expect(csrf.verify(undefined, csrf.issue('s', 2_000_000))).toBe(false);
  });
});
