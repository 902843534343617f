/**
 * @module test/helpers/accounts
 * Client accounts for suites that sign in to the real mirror: an htpasswd file written by the real
 * `htpasswd -B`, and a mirror config with an admin token where each account holds one role on
 * every repository.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { RawConfig } from '../../src/config/schema.ts';
import { mirrorConfig } from './mirror.ts';

/** Writes `dir/htpasswd` with a bcrypt entry per account (name → password) and returns its path. */
export function writeHtpasswd(dir: string, accounts: Record<string, string>): string {
  const file = path.join(dir, 'htpasswd');
  Object.entries(accounts).forEach(([name, password], i) => {
    // -c only for the first entry: it creates (truncates) the file, the others append.
    execFileSync('htpasswd', [i === 0 ? '-Bbc' : '-Bb', file, name, password], { stdio: 'ignore' });
  });
  return file;
}

export interface AccountsConfigOptions {
  adminToken: string;
  htpasswd: string;
  /** Account name → its role on every repository ('**'), one rule per account in this order. */
  roles: Record<string, 'pull' | 'push' | 'admin'>;
}

/** `mirrorConfig` in front of `upstreamUrl` with the admin token and the accounts of an htpasswd file. */
export function accountsConfig(upstreamUrl: string, opts: AccountsConfigOptions): RawConfig {
  return mirrorConfig(upstreamUrl, {
    admin: { token: opts.adminToken },
    auth: {
      htpasswd: opts.htpasswd,
      rules: Object.entries(opts.roles).map(([account, role]) => ({ accounts: [account], repositories: ['**'], roles: [role] })),
    },
  });
}
