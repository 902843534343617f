/**
 * @module test/unit/console/filtered-page
 * Paging through keyset-ordered rows of which a viewer may see only some: batches are read after
 * the key until the page is full or the rows end, never more than the bound, and the next key
 * continues exactly where the page stopped; and the pull predicate judges names as /v2/ does.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { filteredCount, filteredPage } from '../../../src/console/data/filtered-page.ts';
import { canonicalRegistry, pullPredicate } from '../../../src/console/pull-access.ts';
import { repositoryFilter, type Source } from '../../../src/console/data/sources.ts';
import { Authenticator } from '../../../src/auth/authenticator.ts';
import { FailureLimiter } from '../../../src/auth/failure-limiter.ts';
import type { RobotTokens } from '../../../src/auth/robot-tokens.ts';
import { AccessRules } from '../../../src/auth/rules.ts';
import { TokenService } from '../../../src/auth/token-service.ts';
import { silentLogger } from '../../../src/util/logger.ts';

/** `n` names `r000`… in key order, and a fetch that records how many rows each call asked for. */
function rows(n: number): { names: string[]; calls: number[]; fetch: (after: string, limit: number) => string[] } {
  const names = Array.from({ length: n }, (_, i) => `r${String(i).padStart(3, '0')}`);
  const calls: number[] = [];
  return { names, calls, fetch: (after, limit) => (calls.push(limit), names.filter((s) => s > after).slice(0, limit)) };
}

const id = (s: string) => s;
const everyTenth = (s: string) => Number(s.slice(1)) % 10 === 0;

describe('filteredPage', () => {
  it('reads one batch of a page plus one when nothing is filtered, as the unfiltered page did', () => {
    const r = rows(30);
    const page = filteredPage({ fetch: r.fetch, keyOf: id, keep: undefined, after: '', limit: 5 });
    expect(page).toEqual({ items: ['r000', 'r001', 'r002', 'r003', 'r004'], next: 'r004' });
    expect(r.calls).toEqual([6]);
  });

  it('reads further batches until the page is full, and continues after the last row shown', () => {
    const r = rows(100);
    const first = filteredPage({ fetch: r.fetch, keyOf: id, keep: everyTenth, after: '', limit: 3 });
    expect(first).toEqual({ items: ['r000', 'r010', 'r020'], next: 'r020' });
    const second = filteredPage({ fetch: r.fetch, keyOf: id, keep: everyTenth, after: first.next!, limit: 3 });
    expect(second.items).toEqual(['r030', 'r040', 'r050']);
    const last = filteredPage({ fetch: rows(100).fetch, keyOf: id, keep: everyTenth, after: 'r050', limit: 5 });
    expect(last).toEqual({ items: ['r060', 'r070', 'r080', 'r090'], next: undefined });
  });

  it('ends the page without a next key when the rows end, whatever was filtered', () => {
    expect(filteredPage({ fetch: rows(12).fetch, keyOf: id, keep: everyTenth, after: '', limit: 5 })).toEqual({ items: ['r000', 'r010'], next: undefined });
    expect(filteredPage({ fetch: rows(12).fetch, keyOf: id, keep: () => false, after: '', limit: 5 })).toEqual({ items: [], next: undefined });
  });

  it('stops after the batch bound with a next key at the last row read, never reading everything', () => {
    const r = rows(1000);
    const page = filteredPage({ fetch: r.fetch, keyOf: id, keep: (s) => s === 'r999', after: '', limit: 4, maxBatches: 3 });
    expect(page).toEqual({ items: [], next: 'r014' });
    expect(r.calls).toEqual([5, 5, 5]);
    const more = filteredPage({ fetch: r.fetch, keyOf: id, keep: everyTenth, after: page.next!, limit: 4, maxBatches: 3 });
    expect(more.items[0]).toBe('r020');
  });
});

describe('filteredCount', () => {
  it('counts the rows kept, and says when the bound stopped it', () => {
    expect(filteredCount({ fetch: rows(95).fetch, keyOf: id, keep: everyTenth, batch: 10 })).toEqual({ count: 10, capped: false });
    expect(filteredCount({ fetch: rows(95).fetch, keyOf: id, keep: everyTenth, batch: 10, maxBatches: 3 })).toEqual({ count: 3, capped: true });
  });
});

describe('pull predicate', () => {
  // The real authenticator and rules /v2/ asks: the viewer may pull two repositories, named as clients see them.
  const authenticator = new Authenticator({
    accounts: undefined,
    robots: { onRevoke: undefined } as unknown as RobotTokens,
    tokens: new TokenService({ key: randomBytes(32), service: 'ocimirror', ttlMs: 300_000 }),
    rules: new AccessRules([{ accounts: ['viewer'], groups: [], repositories: ['docker.io/library/alpine', 'registry.internal/team/one'], roles: ['pull'] }]),
    anonymous: 'none',
    limiter: new FailureLimiter(),
    log: silentLogger,
  });
  const viewer = pullPredicate(authenticator, { kind: 'account', name: 'viewer' }, false);

  it('judges the name clients see, registry first, Docker Hub as docker.io', () => {
    expect(canonicalRegistry('Index.Docker.IO')).toBe('docker.io');
    for (const registry of ['docker.io', 'index.docker.io', 'Registry-1.Docker.IO']) expect(viewer(registry, 'library/alpine'), registry).toBe(true);
    expect(viewer('docker.io', 'library/busybox')).toBe(false);
    expect(viewer('registry.internal', 'team/one')).toBe(true);
    expect(viewer('other.example', 'library/alpine')).toBe(false);
  });

  it('lets admins see everything, and identities without rules nothing', () => {
    expect(pullPredicate(authenticator, undefined, true)('docker.io', 'anything')).toBe(true);
    expect(pullPredicate(undefined, { kind: 'account', name: 'viewer' }, false)('docker.io', 'library/alpine')).toBe(false);
  });

  it('filters a source by any name clients call it, and not at all for admins', () => {
    const hub: Source = { kind: 'upstream', name: 'hub', registries: ['registry-1.docker.io', 'mirror.example'], offline: false };
    const keep = repositoryFilter({ identity: { admin: false }, canPull: viewer }, hub)!;
    expect(['library/alpine', 'library/busybox'].filter(keep)).toEqual(['library/alpine']);
    expect(repositoryFilter({ identity: { admin: true }, canPull: viewer }, hub)).toBeUndefined();
  });
});
