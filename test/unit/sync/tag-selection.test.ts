/**
 * @module test/unit/sync/tag-selection
 * Choosing tags from a tag list: regex (unanchored, as skopeo), semver ranges read the way
 * skopeo's library reads them, tags-deny, and latest: N by version order.
 */
import { describe, expect, it } from 'vitest';
import { compareTagsHighestFirst, selectTags, tagInRange, tagVersion, validSemverRange } from '../../../src/sync/tag-selection.ts';

const TAGS = ['latest', '3.18', '3.19', '3.19.1', '3.20.0-rc1', 'v3.20', 'edge', '3.12.0', '2.9', '3.19-debug'];

describe('tag versions', () => {
  it('reads v-prefixed and partial versions, and nothing else, as versions', () => {
    expect(tagVersion('v1')?.version).toBe('1.0.0');
    expect(tagVersion('3.19')?.version).toBe('3.19.0');
    expect(tagVersion('1.25.3-alpine')?.version).toBe('1.25.3-alpine');
    expect(tagVersion('010.2')?.version).toBe('10.2.0');
    expect(tagVersion('latest')).toBeNull();
    expect(tagVersion('3.19.1.2')).toBeNull();
    expect(tagVersion('sha256-abc.sig')).toBeNull();
  });

  it('takes comma-joined comparators as skopeo does, and refuses what is not a range', () => {
    expect(validSemverRange('>= 3.12.0')).toBe(true);
    expect(validSemverRange('>= 1.2, < 2')).toBe(true);
    expect(validSemverRange('^1.2 || ~2.0')).toBe(true);
    expect(validSemverRange('not a range!')).toBe(false);
    expect(validSemverRange('')).toBe(false);
    expect(tagInRange('1.5', '>= 1.2, < 2')).toBe(true);
    expect(tagInRange('2.0', '>= 1.2, < 2')).toBe(false);
  });
});

describe('selecting tags', () => {
  it('matches a regex anywhere in the tag unless it is anchored', () => {
    expect(selectTags(TAGS, { kind: 'regex', pattern: '3\\.19' })).toEqual(['3.19', '3.19.1', '3.19-debug']);
    expect(selectTags(TAGS, { kind: 'regex', pattern: '^3\\.19$' })).toEqual(['3.19']);
  });

  it('keeps the tags a semver range admits, leaving out non-versions and prereleases', () => {
    expect(selectTags(TAGS, { kind: 'semver', range: '>= 3.19.0' }).sort()).toEqual(['3.19', '3.19.1', 'v3.20']);
    expect(selectTags(TAGS, { kind: 'semver', range: '>= 3.20.0-rc0' }).sort()).toEqual(['3.20.0-rc1', 'v3.20']);
  });

  it('removes denied tags after selecting', () => {
    expect(selectTags(TAGS, { kind: 'all' }, { deny: ['-debug$', '^edge$', '-rc'] }).sort()).toEqual(['2.9', '3.12.0', '3.18', '3.19', '3.19.1', 'latest', 'v3.20']);
  });

  it('keeps the N highest by version, other tags after every version', () => {
    expect(selectTags(TAGS, { kind: 'all' }, { latest: 3 })).toEqual(['v3.20', '3.20.0-rc1', '3.19.1']);
    expect(selectTags(['latest', 'edge', 'v1'], { kind: 'all' }, { latest: 2 })).toEqual(['v1', 'latest']);
    expect(selectTags(TAGS, { kind: 'regex', pattern: '^3\\.1' }, { latest: 2, deny: ['debug'] })).toEqual(['3.19.1', '3.19']);
  });

  it('orders equal versions by their text, so the order is total', () => {
    expect(['1.0', 'v1', '1'].sort(compareTagsHighestFirst)).toEqual(['v1', '1.0', '1']);
  });
});
