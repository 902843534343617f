/**
 * @module test/unit/sync/sync-dest
 * --dest: the cache, or a hosted registry of the mirror with an optional repository prefix;
 * anything else is refused with what the mirror has.
 */
import { describe, expect, it } from 'vitest';
import { destRepository, formatDest, parseDest } from '../../../src/sync/sync-dest.ts';

describe('sync destinations', () => {
  it('reads cache (the default), a hosted registry, and one with a prefix', () => {
    expect(parseDest(undefined, [])).toEqual({ kind: 'cache' });
    expect(parseDest('cache', ['registry.internal'])).toEqual({ kind: 'cache' });
    expect(parseDest('Registry.Internal', ['registry.internal'])).toEqual({ kind: 'hosted', registry: 'registry.internal', prefix: undefined });
    const dest = parseDest('registry.internal/mirrored/base/', ['registry.internal']);
    expect(dest).toEqual({ kind: 'hosted', registry: 'registry.internal', prefix: 'mirrored/base' });
    expect(formatDest(dest)).toBe('registry.internal/mirrored/base');
    expect(destRepository(dest as Extract<typeof dest, { kind: 'hosted' }>, 'library/alpine')).toBe('mirrored/base/library/alpine');
  });

  it('refuses a registry that is not hosted here, naming the hosted ones, and a bad prefix', () => {
    expect(() => parseDest('quay.io/x', ['registry.internal'])).toThrow("--dest quay.io/x: expected 'cache' or a hosted registry with an optional repository prefix (this mirror has registry.internal)");
    expect(() => parseDest('registry.internal/x', [])).toThrow(/this mirror has none: add one under hosted:/);
    expect(() => parseDest('registry.internal/Bad Prefix', ['registry.internal'])).toThrow(/not a valid repository prefix/);
  });
});
