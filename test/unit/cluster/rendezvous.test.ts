/**
 * @module test/unit/cluster/rendezvous
 * Highest-random-weight hashing: every replica ranks members alike, keys spread evenly, and a
 * membership change moves only the keys that change hands.
 */
import { describe, expect, it } from 'vitest';
import { owner, owners, weight } from '../../../src/cluster/rendezvous.ts';

const A = 'http://10.0.0.11:5000';
const B = 'http://10.0.0.12:5000';
const C = 'http://10.0.0.13:5000';
const D = 'http://10.0.0.14:5000';
const KEYS = Array.from({ length: 10_000 }, (_, i) => `sha256:${i.toString(16).padStart(64, '0')}`);

const ownerMap = (members: string[]) => new Map(KEYS.map((k) => [k, owners(k, members)[0]]));

describe('rendezvous hashing', () => {
  it('ranks the same members the same way whatever order they are listed in', () => {
    for (const key of KEYS.slice(0, 200)) {
      const ranked = owners(key, [A, B, C]);
      expect(owners(key, [C, A, B])).toEqual(ranked);
      expect(owners(key, [B, C, A, B])).toEqual(ranked);
      expect(ranked).toHaveLength(3);
      expect(owner(key, [C, B, A])).toBe(ranked[0]);
    }
  });

  it('gives a fixed answer for a fixed key, so replicas of any version agree', () => {
    // Pinned: a change of hash would split a cluster of mixed versions' view of ownership.
    // The weight is the first 8 bytes of sha256 over 'member NUL key' (as `sha256sum` shows them).
    expect(weight(A, 'sha256:abc').toString(16)).toBe('945309c0cff9997d');
    expect(owners('sha256:abc', [A, B, C])).toEqual([A, C, B]);
    expect(owners('', [])).toEqual([]);
    expect(owner('k', [])).toBeUndefined();
  });

  it('spreads 10k keys over 3 members within 10 % of an even share', () => {
    const counts = new Map<string, number>();
    for (const o of ownerMap([A, B, C]).values()) counts.set(o as string, (counts.get(o as string) ?? 0) + 1);
    const even = KEYS.length / 3;
    for (const m of [A, B, C]) {
      expect(counts.get(m)).toBeGreaterThan(even * 0.9);
      expect(counts.get(m)).toBeLessThan(even * 1.1);
    }
  });

  it('moves only the keys of a member that leaves, to the others', () => {
    const before = ownerMap([A, B, C, D]);
    const after = ownerMap([A, B, C]);
    let moved = 0;
    for (const key of KEYS) {
      if (before.get(key) === D) {
        moved++;
        expect(after.get(key)).not.toBe(D);
      } else {
        expect(after.get(key)).toBe(before.get(key));
      }
    }
    // ~1/4 of the keys were D's.
    expect(moved / KEYS.length).toBeGreaterThan(0.22);
    expect(moved / KEYS.length).toBeLessThan(0.28);
  });

  it('gives a member that joins about 1/(N+1) of the keys, taken from the others only', () => {
    const before = ownerMap([A, B, C]);
    const after = ownerMap([A, B, C, D]);
    let taken = 0;
    for (const key of KEYS) {
      if (after.get(key) === before.get(key)) continue;
      expect(after.get(key)).toBe(D);
      taken++;
    }
    expect(taken / KEYS.length).toBeGreaterThan(0.22);
    expect(taken / KEYS.length).toBeLessThan(0.28);
  });

  it('makes the second-ranked member the owner when the first is gone', () => {
    for (const key of KEYS.slice(0, 500)) {
      const [first, second] = owners(key, [A, B, C]);
      expect(owners(key, [A, B, C].filter((m) => m !== first))[0]).toBe(second);
    }
  });
});
