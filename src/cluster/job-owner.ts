/**
 * @module cluster/job-owner
 * Which replica runs a scheduled cluster-wide task (a watch-list refresh, a sync entry, bucket
 * eviction): the rendezvous owner of `job:<name>` among the members up. Every replica evaluates it
 * at each tick from its own view, so when the owner dies the next owner takes the next tick: at
 * worst a run is duplicated while views differ, never skipped by everyone.
 */
import { owner } from './rendezvous.ts';

/** What ownership is computed from: this replica's URL and the sorted URLs of the members up. */
export interface MembershipView {
  readonly self: string;
  up(): readonly string[];
}

/** The rendezvous key of a scheduled task; the prefix keeps job keys apart from blob and tag keys. */
export function jobKey(name: string): string {
  return `job:${name}`;
}

/**
 * `owns(name)`: whether this replica runs the task `name` now. A replica that sees no member up,
 * or does not count itself among them, owns everything: one that sees nobody must not stop working.
 */
export function jobOwner(membership: MembershipView): (name: string) => boolean {
  return (name) => {
    const up = membership.up();
    if (!up.includes(membership.self)) return true;
    return owner(jobKey(name), up) === membership.self;
  };
}
