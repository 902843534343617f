import { describe, expect, it } from 'vitest';
import { SessionStore } from '../../../src/console/session.ts';

function store(opts: { ttlMs?: number; max?: number } = {}) {
  let now = 1_000_000;
  const sessions = new SessionStore({ ttlMs: () => opts.ttlMs ?? 60_000, csrfFor: (id, expiresAt) => `csrf-${id}-${expiresAt}`, now: () => now, ...(opts.max ? { max: opts.max } : {}) });
  return { sessions, advance: (ms: number) => (now += ms) };
}

const viewer = { name: 'alice', admin: false };

describe('console sessions', () => {
  it('finds a session by its id until it expires, then forgets it', () => {
    const { sessions, advance } = store({ ttlMs: 60_000 });
    const s = sessions.create(viewer, { kind: 'account', name: 'alice' });
    expect(sessions.get(s.id)?.identity).toEqual(viewer);
    advance(59_999);
    expect(sessions.get(s.id)).toBeDefined();
    advance(1);
    expect(sessions.get(s.id)).toBeUndefined();
    expect(sessions.size).toBe(0);
  });

  it('gives each session a distinct random id and a CSRF token bound to it', () => {
    const { sessions } = store();
    const a = sessions.create(viewer, { kind: 'account', name: 'alice' });
    const b = sessions.create(viewer, { kind: 'account', name: 'alice' });
    expect(a.id).not.toBe(b.id);
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.csrf).toBe(`csrf-${a.id}-${a.expiresAt}`);
  });

  it('knows no session for an unknown or missing id', () => {
    const { sessions } = store();
    expect(sessions.get(undefined)).toBeUndefined();
    expect(sessions.get('nope')).toBeUndefined();
  });

  it('ends a session on logout', () => {
    const { sessions } = store();
    const s = sessions.create(viewer, { kind: 'account', name: 'alice' });
    sessions.delete(s.id);
    expect(sessions.get(s.id)).toBeUndefined();
  });

  it('ends every session a revoked robot token opened, and only those', () => {
    const { sessions } = store();
    const robot = sessions.create({ name: 'robot:aa', admin: true }, { kind: 'robot', id: 'aa' });
    const other = sessions.create({ name: 'robot:bb', admin: true }, { kind: 'robot', id: 'bb' });
    sessions.revokeRobot('aa');
    expect(sessions.get(robot.id)).toBeUndefined();
    expect(sessions.get(other.id)).toBeDefined();
  });

  it('drops the oldest session when full, and expired ones first', () => {
    const { sessions, advance } = store({ max: 2, ttlMs: 1000 });
    const first = sessions.create(viewer, { kind: 'account', name: 'a' });
    const second = sessions.create(viewer, { kind: 'account', name: 'b' });
    const third = sessions.create(viewer, { kind: 'account', name: 'c' });
    expect(sessions.get(first.id)).toBeUndefined();
    expect(sessions.get(second.id)).toBeDefined();
    expect(sessions.get(third.id)).toBeDefined();
    advance(1000);
    sessions.create(viewer, { kind: 'account', name: 'd' });
    expect(sessions.size).toBe(1);
  });

  it('reads the lifetime at each login, so a reloaded sessionTTL applies to the next one', () => {
    let ttl = 1000;
    const sessions = new SessionStore({ ttlMs: () => ttl, csrfFor: () => 'x', now: () => 0 });
    expect(sessions.create(viewer, { kind: 'account', name: 'a' }).expiresAt).toBe(1000);
    ttl = 5000;
    expect(sessions.create(viewer, { kind: 'account', name: 'a' }).expiresAt).toBe(5000);
  });
});
