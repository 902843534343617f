/**
 * @module cluster/rendezvous
 * Highest-random-weight (rendezvous) hashing: every replica ranks the members for a key the same
 * way from the key and the member list alone, so they agree on a key's owner without talking, and
 * a member joining or leaving moves only the keys it gains or held (~1/N of them).
 */
import { createHash } from 'node:crypto';

/** The first 64 bits of sha256(member, key): a weight every replica computes alike. */
export function weight(member: string, key: string): bigint {
  // The NUL keeps ('ab', 'c') and ('a', 'bc') apart; neither a URL nor a digest holds one.
  return createHash('sha256').update(member).update('\0').update(key).digest().readBigUInt64BE(0);
}

/**
 * `members` ordered by their weight for `key`, highest first: the first is the key's owner, the
 * next ones its successors should it be down. Duplicates are dropped; ties (2^-64) go by name.
 */
export function owners(key: string, members: readonly string[]): string[] {
  const ranked = [...new Set(members)].map((member) => ({ member, w: weight(member, key) }));
  ranked.sort((a, b) => (a.w === b.w ? (a.member < b.member ? -1 : 1) : a.w > b.w ? -1 : 1));
  return ranked.map((r) => r.member);
}

/** The key's owner among `members`; undefined for an empty list. */
export function owner(key: string, members: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1n;
  for (const member of members) {
    const w = weight(member, key);
    if (w > bestWeight || (w === bestWeight && best !== undefined && member < best)) {
      best = member;
      bestWeight = w;
    }
  }
  return best;
}
