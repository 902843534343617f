/**
 * @module test/unit/cluster/job-owner
 * Who runs a scheduled cluster-wide task: exactly one of the replicas that see the same members
 * up, the rendezvous owner of `job:<name>`; a departed owner's tasks go to the others; a replica
 * that sees nobody, or not itself, keeps working.
 */
import { describe, expect, it } from 'vitest';
import { jobKey, jobOwner } from '../../../src/cluster/job-owner.ts';
import { owner } from '../../../src/cluster/rendezvous.ts';

const MEMBERS = ['http://10.0.0.11:5000', 'http://10.0.0.12:5000', 'http://10.0.0.13:5000'];
const TASKS = Array.from({ length: 60 }, (_, i) => `refresh docker.io/library/image-${i}:latest`);

const view = (self: string, up: string[]) => ({ self, up: () => up });

describe('jobOwner', () => {
  it('gives each task to exactly one of the replicas that see the same members up', () => {
    const owns = MEMBERS.map((self) => jobOwner(view(self, MEMBERS)));
    const perReplica = MEMBERS.map(() => 0);
    for (const task of TASKS) {
      const owners = owns.map((o) => o(task));
      expect(owners.filter(Boolean)).toHaveLength(1);
      perReplica[owners.indexOf(true)]!++;
    }
    // Rendezvous spreads the tasks: every replica gets some of the 60.
    expect(perReplica.every((n) => n > 0)).toBe(true);
  });

  it('picks the rendezvous owner of job:<name> among the members up', () => {
    for (const task of TASKS.slice(0, 10)) {
      const expected = owner(jobKey(task), MEMBERS);
      expect(jobKey(task)).toBe(`job:${task}`);
      for (const self of MEMBERS) expect(jobOwner(view(self, MEMBERS))(task)).toBe(self === expected);
    }
  });

  it('hands a departed owner’s tasks to the replicas still up at the next tick and moves no other task', () => {
    const [a, b, c] = MEMBERS as [string, string, string];
    let up = [...MEMBERS];
    const ownsA = jobOwner({ self: a, up: () => up });
    const ownsB = jobOwner({ self: b, up: () => up });
    const before = new Map(TASKS.map((t) => [t, ownsA(t) ? a : ownsB(t) ? b : c]));
    expect([...before.values()]).toContain(c);
    up = [a, b];
    for (const task of TASKS) {
      const now = ownsA(task) ? a : b;
      expect(ownsA(task) !== ownsB(task)).toBe(true);
      if (before.get(task) !== c) expect(now).toBe(before.get(task));
    }
  });

  it('owns everything when no member is up or this replica is not among them', () => {
    const [a, b] = MEMBERS as [string, string];
    for (const task of TASKS.slice(0, 5)) {
      expect(jobOwner(view(a, []))(task)).toBe(true);
      expect(jobOwner(view(a, [b]))(task)).toBe(true);
    }
  });

  it('owns everything alone', () => {
    const [a] = MEMBERS as [string];
    expect(TASKS.every((t) => jobOwner(view(a, [a]))(t))).toBe(true);
  });
});
