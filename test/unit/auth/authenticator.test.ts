/**
 * @module test/unit/auth/authenticator
 * Credentials are verified once per header and then served from the cache (which the manifest
 * fast path reads), failures count toward the client's backoff, and grants follow the rules.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Authenticator } from '../../../src/auth/authenticator.ts';
import { FailureLimiter } from '../../../src/auth/failure-limiter.ts';
import type { HtpasswdAccounts } from '../../../src/auth/htpasswd.ts';
import type { RobotTokens } from '../../../src/auth/robot-tokens.ts';
import { AccessRules } from '../../../src/auth/rules.ts';
import { TokenService } from '../../../src/auth/token-service.ts';
import { RegistryError } from '../../../src/registry/errors.ts';
import { silentLogger } from '../../../src/util/logger.ts';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function setup(now: () => number) {
  let checks = 0;
  const accounts = {
    onReload: undefined,
    verify: async (user: string, password: string) => {
      checks++;
      return user === 'node' && password === 'pw';
    },
  } as unknown as HtpasswdAccounts;
  const robots = { onRevoke: undefined, verify: () => undefined } as unknown as RobotTokens;
  const tokens = new TokenService({ key: randomBytes(32), service: 'ocimirror', ttlMs: 300_000, now });
  const auth = new Authenticator({
    accounts,
    robots,
    tokens,
    rules: new AccessRules([{ accounts: ['node'], groups: [], repositories: ['docker.io/library/*'], roles: ['pull'] }]),
    anonymous: 'none',
    limiter: new FailureLimiter({ free: 2, now }),
    log: silentLogger,
    now,
  });
  return { auth, tokens, checks: () => checks };
}

describe('Authenticator', () => {
  it('checks a Basic credential once, then answers from the cache until it ages out', async () => {
    let now = 1_000_000;
    const { auth, checks } = setup(() => now);
    const header = basic('node', 'pw');
    expect(auth.cached(header)).toBeUndefined();
    await auth.authenticate(header, '10.0.0.1', 'challenge');
    await auth.authenticate(header, '10.0.0.1', 'challenge');
    expect(checks()).toBe(1);
    expect(auth.cached(header)).toEqual({ kind: 'account', name: 'node' });
    now += 61_000;
    expect(auth.cached(header)).toBeUndefined();
  });

  it('grants by the rules on the repository as clients name it through the mirror', async () => {
    const { auth } = setup(() => 1_000_000);
    const id = await auth.authenticate(basic('node', 'pw'), '10.0.0.1', 'c');
    expect(auth.may(id, 'docker.io/library/alpine', 'library/alpine', 'pull')).toBe(true);
    expect(auth.may(id, 'docker.io/library/alpine', 'library/alpine', 'push')).toBe(false);
    expect(auth.may(id, 'ghcr.io/x/y', 'ghcr.io/x/y', 'pull')).toBe(false);
    expect(auth.may({ kind: 'anonymous' }, 'docker.io/library/alpine', 'library/alpine', 'pull')).toBe(false);
  });

  it('honours a bearer token only for the repositories and actions it names', async () => {
    const { auth, tokens } = setup(() => 1_000_000);
    const { token } = await tokens.issue('node', [{ type: 'repository', name: 'library/alpine', actions: ['pull'] }]);
    const id = await auth.authenticate(`Bearer ${token}`, '10.0.0.1', 'c');
    expect(auth.may(id, 'docker.io/library/alpine', 'library/alpine', 'pull')).toBe(true);
    expect(auth.may(id, 'docker.io/library/alpine', 'library/alpine', 'push')).toBe(false);
    expect(auth.may(id, 'docker.io/library/busybox', 'library/busybox', 'pull')).toBe(false);
  });

  it("applies the account's rules again where a bearer token's name reaches another registry (containerd's ns)", async () => {
    const { auth, tokens } = setup(() => 1_000_000);
    const { token } = await tokens.issue('node', [{ type: 'repository', name: 'library/alpine', actions: ['pull'] }]);
    const id = await auth.authenticate(`Bearer ${token}`, '10.0.0.1', 'c');
    expect(auth.may(id, 'quay.io/library/alpine', 'library/alpine', 'pull')).toBe(false);
  });

  it('refuses wrong credentials with the challenge, then backs the client off with 429', async () => {
    const { auth } = setup(() => 1_000_000);
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) {
      try {
        await auth.authenticate(basic('node', 'wrong'), '10.0.0.1', 'Bearer realm="x"');
      } catch (err) {
        codes.push((err as RegistryError).code);
        if (i === 0) expect((err as RegistryError).headers['WWW-Authenticate']).toBe('Bearer realm="x"');
      }
    }
    expect(codes).toEqual(['UNAUTHORIZED', 'UNAUTHORIZED', 'UNAUTHORIZED', 'TOOMANYREQUESTS']);
    // Another address is not held back by this one's failures.
    await expect(auth.authenticate(basic('node', 'pw'), '10.0.0.2', 'c')).resolves.toEqual({ kind: 'account', name: 'node' });
  });
});
