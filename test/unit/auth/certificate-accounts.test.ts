/**
 * @module test/unit/auth/certificate-accounts
 * A client certificate's subject CN names an account: by default the CN itself; with a list, the
 * first matching entry's account (or the CN), and no account when nothing matches.
 */
import { describe, expect, it } from 'vitest';
import { CertificateAccounts } from '../../../src/auth/certificate-accounts.ts';
import { parseConfig } from '../../../src/config/load.ts';

describe('CertificateAccounts', () => {
  it('names the account after the CN by default', () => {
    const accounts = new CertificateAccounts();
    expect(accounts.accountFor('node')).toBe('node');
    expect(accounts.accountFor('ops.example.com')).toBe('ops.example.com');
  });

  it('maps CNs by pattern, first match first, and a bare entry keeps the CN', () => {
    const accounts = new CertificateAccounts([{ cn: 'node-*.example.com', account: 'node' }, { cn: 'ci-runner', account: 'ci' }, { cn: 'build-*' }]);
    expect(accounts.accountFor('node-17.example.com')).toBe('node');
    expect(accounts.accountFor('ci-runner')).toBe('ci');
    expect(accounts.accountFor('build-7')).toBe('build-7');
    expect(accounts.accountFor('nodeX17.example.com')).toBeUndefined();
    expect(accounts.accountFor('node-1.example.com.evil')).toBeUndefined();
    expect(accounts.accountFor('ci-runner2')).toBeUndefined();
    expect(accounts.accountFor('stranger')).toBeUndefined();
  });

  it('takes pattern characters other than * literally', () => {
    const accounts = new CertificateAccounts([{ cn: 'a.b(c)+', account: 'x' }]);
    expect(accounts.accountFor('a.b(c)+')).toBe('x');
    expect(accounts.accountFor('aXb(c)+')).toBeUndefined();
  });

  it('names no account for a certificate without a CN, or with an empty list', () => {
    expect(new CertificateAccounts().accountFor(undefined)).toBeUndefined();
    expect(new CertificateAccounts().accountFor('')).toBeUndefined();
    expect(new CertificateAccounts([]).accountFor('node')).toBeUndefined();
  });
});

describe('auth.certificates in the config', () => {
  const upstreams = [{ name: 'hub', url: 'https://registry-1.docker.io', registries: ['docker.io'] }];

  it('defaults to the CN as the account name', () => {
    expect(parseConfig({ upstreams, auth: {} }).auth?.certificates).toEqual([{ cn: '*' }]);
  });

  it('takes cn patterns with an optional account, and refuses empty patterns and unknown keys', () => {
    const certificates = [{ cn: 'node-*', account: 'node' }, { cn: '*' }];
    expect(parseConfig({ upstreams, auth: { certificates } }).auth?.certificates).toEqual(certificates);
    expect(() => parseConfig({ upstreams, auth: { certificates: [{ cn: '' }] } })).toThrow(/auth\.certificates\[0\]\.cn/);
    expect(() => parseConfig({ upstreams, auth: { certificates: [{ cn: 'x', acount: 'y' }] } })).toThrow(/acount/);
  });
});
