/**
 * @module test/helpers/tools
 * Gates integration suites on the external programs they run (docker-registry, openssl, htpasswd, ...).
 * On a developer machine a missing tool skips the suite with a loud banner; in CI (process.env.CI set)
 * it fails the suite instead, because a silently skipped integration suite there would look like a pass.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { describe, it } from 'vitest';

/** The Debian package that provides each tool, so the failure message says what to apt-get install. */
const DEBIAN_PACKAGES: Record<string, string> = {
  'docker-registry': 'docker-registry',
  htpasswd: 'apache2-utils',
  openssl: 'openssl',
  skopeo: 'skopeo',
  containerd: 'containerd',
  ctr: 'containerd',
  podman: 'podman',
  umoci: 'umoci',
  zstd: 'zstd',
  haproxy: 'haproxy',
  // The S3 test store (test/helpers/s3-server.ts) also needs python3-swift, which installs no program to look for.
  memcached: 'memcached',
};

/** True when `name` is an executable file on PATH. */
export function hasTool(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function requireTools(...names: string[]): { ok: boolean; missing: string[] } {
  const missing = names.filter((n) => !hasTool(n));
  return { ok: missing.length === 0, missing };
}

/** `describe` that runs only when every tool in `names` is on PATH; see the module comment for what happens otherwise. */
export function describeWithTools(names: string[], title: string, fn: () => void): void {
  const { ok, missing } = requireTools(...names);
  const packages = [...new Set(missing.map((m) => DEBIAN_PACKAGES[m] ?? m))].join(' ');
  describeIf(ok, `missing tools: ${missing.join(', ')} (apt-get install -y ${packages})`, title, fn);
}

/** `describe` that runs only when `ok`; otherwise skipped loudly, or failed when CI is set, saying `why`. */
export function describeIf(ok: boolean, why: string, title: string, fn: () => void): void {
  if (ok) {
    describe(title, fn);
    return;
  }
  if (process.env.CI) {
    describe(title, () => {
      it('has the external tools it needs', () => {
        throw new Error(`${title}: ${why}`);
      });
    });
    return;
  }
  const bar = '!'.repeat(78);
  console.warn(`\n${bar}\n!! SKIPPED: ${title}\n!! ${why}\n!! (in CI, with CI set, this suite fails instead)\n${bar}\n`);
  describe.skip(title, fn);
}
