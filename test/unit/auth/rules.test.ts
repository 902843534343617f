/**
 * @module test/unit/auth/rules
 * Repository patterns and first-match-wins access rules, by account and by group.
 */
import { describe, expect, it } from 'vitest';
import { AccessRules, actionsOf, compilePattern } from '../../../src/auth/rules.ts';

describe('compilePattern', () => {
  it('lets * match within one path component only', () => {
    const re = compilePattern('docker.io/library/*');
    expect(re.test('docker.io/library/alpine')).toBe(true);
    expect(re.test('docker.io/library/a/b')).toBe(false);
    expect(re.test('docker.io/other/alpine')).toBe(false);
  });

  it('lets ** match any number of components', () => {
    const re = compilePattern('ghcr.io/myorg/**');
    expect(re.test('ghcr.io/myorg/app')).toBe(true);
    expect(re.test('ghcr.io/myorg/team/app')).toBe(true);
    expect(re.test('ghcr.io/other/app')).toBe(false);
    expect(compilePattern('**').test('registry.test/any/thing')).toBe(true);
  });

  it('treats dots and other characters literally', () => {
    expect(compilePattern('docker.io/x').test('dockerxio/x')).toBe(false);
    expect(compilePattern('a+b/c').test('a+b/c')).toBe(true);
  });
});

describe('AccessRules', () => {
  const rules = new AccessRules(
    [
      { accounts: ['eve'], groups: [], repositories: ['**'], roles: ['pull'] },
      { accounts: [], groups: ['ci'], repositories: ['ghcr.io/myorg/**'], roles: ['push'] },
      { accounts: ['ops'], groups: [], repositories: ['**'], roles: ['pull', 'admin'] },
      { accounts: ['builder', 'eve'], groups: [], repositories: ['docker.io/library/*'], roles: ['push'] },
      { accounts: ['*'], groups: [], repositories: ['docker.io/**'], roles: ['pull'] },
    ],
    { ci: ['builder'] },
  );

  it('uses the first rule that names the account and matches the repository', () => {
    // eve's first rule is pull on everything; the later push rule naming her never applies.
    expect(rules.roleFor('eve', 'docker.io/library/alpine')).toBe('pull');
    expect(rules.roleFor('builder', 'docker.io/library/alpine')).toBe('push');
  });

  it('applies rules to members of a group', () => {
    expect(rules.roleFor('builder', 'ghcr.io/myorg/app')).toBe('push');
    expect(rules.roleFor('stranger', 'ghcr.io/myorg/app')).toBeUndefined();
  });

  it('lets * stand for any account', () => {
    expect(rules.roleFor('stranger', 'docker.io/library/alpine')).toBe('pull');
    expect(rules.roleFor('stranger', 'quay.io/x/y')).toBeUndefined();
  });

  it('grants the strongest role a rule lists, and admin only to accounts with an admin rule', () => {
    expect(rules.roleFor('ops', 'quay.io/x/y')).toBe('admin');
    expect(rules.isAdmin('ops')).toBe(true);
    expect(rules.isAdmin('builder')).toBe(false);
  });

  it('maps roles to registry actions, each including the weaker', () => {
    expect(actionsOf('pull')).toEqual(['pull']);
    expect(actionsOf('push')).toEqual(['pull', 'push']);
    expect(actionsOf('admin')).toContain('delete');
    expect(actionsOf(undefined)).toEqual([]);
  });
});
