/**
 * @module test/unit/cluster/membership
 * The membership state machine, driven round by round with a hand-moved clock, a fake fetch
 * standing in for the peers, and a member list the test edits (as DNS answers would change).
 */
import { describe, expect, it, vi } from 'vitest';
import { Membership, type PeerFetch } from '../../../src/cluster/membership.ts';
import { PeerAuth } from '../../../src/cluster/peer-auth.ts';
import { TestClock } from '../../helpers/clock.ts';
import { captureLog } from '../../helpers/log-capture.ts';

const SELF = 'http://10.0.0.11:5000';
const B = 'http://10.0.0.12:5000';
const C = 'http://10.0.0.13:5000';
const SECRET = 'cluster-secret-0123456789abcdef-0123';

/** Peers that answer as themselves unless marked dead (refused) or answering with another status. */
function fakePeers(clock: TestClock) {
  const dead = new Set<string>();
  const status = new Map<string, number>();
  const calls: Array<{ url: string; authorization: string | undefined }> = [];
  const fetch: PeerFetch = async (url, init) => {
    calls.push({ url, authorization: init.headers.authorization });
    const member = url.replace(/\/cluster\/v1\/health$/, '');
    clock.advance(7); // the round trip
    if (dead.has(member)) throw Object.assign(new Error('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
    return { status: status.get(member) ?? 200, json: async () => ({ self: member, version: '9.9.9', members: [] }) };
  };
  return { dead, status, calls, fetch };
}

function setup(opts: { failAfter?: number; members?: string[] } = {}) {
  const clock = new TestClock(1_700_000_000_000);
  const peers = fakePeers(clock);
  const log = captureLog();
  let list: string[] = opts.members ?? [SELF, B, C];
  const membership = new Membership({
    self: SELF,
    members: () => list,
    auth: new PeerAuth(SECRET),
    intervalMs: 1000,
    failAfter: opts.failAfter ?? 3,
    log: log.logger,
    now: clock.now,
    fetch: peers.fetch,
  });
  const state = (url: string) => membership.members().find((m) => m.url === url);
  return { clock, peers, log, membership, state, setList: (l: string[]) => (list = l) };
}

describe('Membership', () => {
  it('starts with self up and the others unknown until checked', () => {
    const { membership } = setup();
    expect(membership.members().map((m) => [m.url, m.state])).toEqual([[SELF, 'up']]);
  });

  it('marks members up after a round, with the time, round trip and version they answered with', async () => {
    const { membership, state, clock, peers } = setup();
    await membership.round();
    expect(membership.members().map((m) => [m.url, m.state, m.self])).toEqual([
      [SELF, 'up', true],
      [B, 'up', false],
      [C, 'up', false],
    ]);
    expect(state(B)).toMatchObject({ lastOk: clock.now(), consecutiveFailures: 0, rttMs: expect.any(Number), version: '9.9.9', lastError: null });
    expect(state(B)!.rttMs).toBeGreaterThanOrEqual(7);
    // Self is never checked; every check carries the secret.
    expect(peers.calls.map((c) => c.url).sort()).toEqual([`${B}/cluster/v1/health`, `${C}/cluster/v1/health`]);
    expect(peers.calls.every((c) => c.authorization === `Bearer ${SECRET}`)).toBe(true);
    expect(membership.up()).toEqual([SELF, B, C]);
    expect(membership.counts()).toEqual({ up: 3, down: 0, unknown: 0 });
  });

  it('keeps a member up through failAfter-1 failures, marks it down at failAfter, and up again at its next answer', async () => {
    const { membership, state, peers, log } = setup({ failAfter: 3 });
    await membership.round();
    peers.dead.add(C);
    await membership.round();
    await membership.round();
    expect(state(C)).toMatchObject({ state: 'up', consecutiveFailures: 2, lastError: 'fetch failed: ECONNREFUSED' });
    await membership.round();
    expect(state(C)).toMatchObject({ state: 'down', consecutiveFailures: 3 });
    expect(state(B)!.state).toBe('up');
    expect(membership.up()).toEqual([SELF, B]);
    expect(membership.counts()).toEqual({ up: 2, down: 1, unknown: 0 });
    await membership.round();
    expect(state(C)).toMatchObject({ state: 'down', consecutiveFailures: 4 });
    peers.dead.delete(C);
    await membership.round();
    expect(state(C)).toMatchObject({ state: 'up', consecutiveFailures: 0 });
    // One line per transition, not one per failed check.
    const transitions = log.lines().filter((l) => l.member === C).map((l) => l.msg);
    expect(transitions).toEqual(['cluster member joined the list', 'cluster member up', 'cluster member down', 'cluster member up']);
  });

  it('takes a member never reached from unknown to down after failAfter failures', async () => {
    const { membership, state, peers } = setup({ failAfter: 2 });
    peers.dead.add(B);
    await membership.round();
    expect(state(B)).toMatchObject({ state: 'unknown', consecutiveFailures: 1, lastOk: null });
    await membership.round();
    expect(state(B)!.state).toBe('down');
  });

  it('counts a refused secret, an error status and an answer under another name as failures', async () => {
    const { membership, state, peers, setList } = setup({ failAfter: 1 });
    peers.status.set(B, 401);
    peers.status.set(C, 503);
    const D = 'http://10.0.0.14:5000';
    setList([SELF, B, C, D]);
    const fetch = peers.fetch;
    const m = new Membership({ self: SELF, members: () => [SELF, D], auth: new PeerAuth(SECRET), intervalMs: 1000, failAfter: 1, log: captureLog().logger, fetch: async (url, init) => ({ ...(await fetch(url, init)), json: async () => ({ self: 'http://10.9.9.9:5000' }) }) });
    await membership.round();
    expect(state(B)).toMatchObject({ state: 'down', lastError: 'refused the cluster secret (401)' });
    expect(state(C)).toMatchObject({ state: 'down', lastError: 'answered 503' });
    expect(state(D)!.state).toBe('up');
    await m.round();
    expect(m.members().find((x) => x.url === D)).toMatchObject({ state: 'down', lastError: 'answered as "http://10.9.9.9:5000"' });
  });

  it('marks a member that does not answer within the interval as failed, without waiting longer', async () => {
    const log = captureLog();
    const hung: PeerFetch = (_url, init) => new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
    const m = new Membership({ self: SELF, members: () => [SELF, B], auth: new PeerAuth(SECRET), intervalMs: 2500, failAfter: 1, log: log.logger, fetch: hung });
    vi.useFakeTimers();
    try {
      const round = m.round();
      await vi.advanceTimersByTimeAsync(2500);
      await round;
    } finally {
      vi.useRealTimers();
    }
    expect(m.members()[1]).toMatchObject({ url: B, state: 'down', lastError: 'no answer within 2500 ms' });
  });

  it('gives a busy member at least a second to answer however short the interval', async () => {
    const log = captureLog();
    const hung: PeerFetch = (_url, init) => new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
    const m = new Membership({ self: SELF, members: () => [SELF, B], auth: new PeerAuth(SECRET), intervalMs: 200, failAfter: 1, log: log.logger, fetch: hung });
    vi.useFakeTimers();
    try {
      const round = m.round();
      await vi.advanceTimersByTimeAsync(999);
      expect(m.members()[1]!.state).not.toBe('down');
      await vi.advanceTimersByTimeAsync(1);
      await round;
    } finally {
      vi.useRealTimers();
    }
    expect(m.members()[1]).toMatchObject({ url: B, state: 'down', lastError: 'no answer within 1000 ms' });
  });

  it('knows a listed member by its address, IPv4-mapped or not, and no other address', async () => {
    const { membership } = setup({ members: [SELF, B] });
    await membership.round();
    const host = new URL(B).hostname;
    expect(membership.isMemberAddress(host)).toBe(true);
    expect(membership.isMemberAddress(`::ffff:${host}`)).toBe(true);
    expect(membership.isMemberAddress('192.0.2.99')).toBe(false);
    expect(membership.isMemberAddress(undefined)).toBe(false);
  });

  it('adds members the list gains and drops those it loses, keeping the state of the rest', async () => {
    const { membership, state, setList, peers } = setup({ members: [SELF, B] });
    await membership.round();
    peers.dead.add(B);
    await membership.round();
    expect(state(B)!.consecutiveFailures).toBe(1);
    setList([SELF, B, C]);
    await membership.round();
    expect(membership.members().map((m) => m.url)).toEqual([SELF, B, C]);
    expect(state(C)!.state).toBe('up');
    expect(state(B)!.consecutiveFailures).toBe(2);
    setList([C]);
    await membership.round();
    // Self stays whatever the list says.
    expect(membership.members().map((m) => m.url)).toEqual([SELF, C]);
  });

  it('keeps the previous list while the list cannot be read, and says why', async () => {
    const clock = new TestClock();
    const peers = fakePeers(clock);
    const log = captureLog();
    let failing = false;
    const m = new Membership({
      self: SELF,
      members: async () => {
        if (failing) throw new Error('queryA ETIMEOUT ocimirror-headless.test');
        return [SELF, B];
      },
      auth: new PeerAuth(SECRET),
      intervalMs: 1000,
      failAfter: 3,
      log: log.logger,
      now: clock.now,
      fetch: peers.fetch,
    });
    await m.round();
    failing = true;
    await m.round();
    await m.round();
    expect(m.resolveError).toBe('queryA ETIMEOUT ocimirror-headless.test');
    expect(m.members().map((x) => [x.url, x.state])).toEqual([[SELF, 'up'], [B, 'up']]);
    expect(log.lines().filter((l) => l.msg === 'cluster member list lookup failed; keeping the previous list')).toHaveLength(1);
    failing = false;
    await m.round();
    expect(m.resolveError).toBeNull();
  });

  it('cuts checks in flight when stopped, applies nothing they return, and does not start again', async () => {
    const signals: AbortSignal[] = [];
    const hung: PeerFetch = (_url, init) => {
      signals.push(init.signal);
      return new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
    };
    const m = new Membership({ self: SELF, members: () => [SELF, B], auth: new PeerAuth(SECRET), intervalMs: 60_000, failAfter: 1, log: captureLog().logger, fetch: hung });
    m.start();
    await new Promise((r) => setImmediate(r));
    expect(signals).toHaveLength(1);
    await m.stop();
    expect(signals[0]!.aborted).toBe(true);
    expect(m.members().find((x) => x.url === B)).toMatchObject({ state: 'unknown', consecutiveFailures: 0 });
    m.start();
    await new Promise((r) => setImmediate(r));
    expect(signals).toHaveLength(1);
  });
});
