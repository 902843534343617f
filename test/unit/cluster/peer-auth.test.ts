/**
 * @module test/unit/cluster/peer-auth
 * The cluster secret check: only `Bearer <secret>` passes, and the secret never shows when the
 * object is logged or serialised.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { PeerAuth } from '../../../src/cluster/peer-auth.ts';

const SECRET = 'cluster-secret-0123456789abcdef-0123';

describe('PeerAuth', () => {
  it('accepts the secret as a bearer token, in any case of the scheme name', () => {
    const auth = new PeerAuth(SECRET);
    expect(auth.verify(`Bearer ${SECRET}`)).toBe(true);
    expect(auth.verify(`bearer ${SECRET}`)).toBe(true);
  });

  it('refuses a missing header, another scheme, a prefix, an extension and another secret', () => {
    const auth = new PeerAuth(SECRET);
    expect(auth.verify(undefined)).toBe(false);
    expect(auth.verify('')).toBe(false);
    expect(auth.verify(`Basic ${Buffer.from(`x:${SECRET}`).toString('base64')}`)).toBe(false);
    expect(auth.verify(`Bearer ${SECRET.slice(0, -1)}`)).toBe(false);
    expect(auth.verify(`Bearer ${SECRET}x`)).toBe(false);
    expect(auth.verify(`Bearer ${'x'.repeat(SECRET.length)}`)).toBe(false);
    expect(auth.verify(SECRET)).toBe(false);
  });

  it('puts the secret on outgoing requests and nowhere else', () => {
    const auth = new PeerAuth(SECRET);
    expect(auth.headers()).toEqual({ authorization: `Bearer ${SECRET}` });
    expect(JSON.stringify({ auth })).not.toContain(SECRET);
    expect(inspect(auth, { depth: 5 })).not.toContain(SECRET);
    expect(String(auth)).not.toContain(SECRET);
  });
});
