/**
 * @module test/unit/auth/authenticator
 * Credentials are verified once per header and then served from the cache (which the manifest
 * fast path reads), failures count toward the client's backoff, and grants follow the rules. A
 * verified client certificate names an account when no header is sent; malformed and over-long
 * headers are refused before any password comparison, and the log never carries the secret.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Authenticator, MAX_AUTHORIZATION_CHARS } from '../../../src/auth/authenticator.ts';
import { CertificateAccounts, type CertificateMapping } from '../../../src/auth/certificate-accounts.ts';
import { FailureLimiter } from '../../../src/auth/failure-limiter.ts';
import type { HtpasswdAccounts } from '../../../src/auth/htpasswd.ts';
import type { RobotTokens } from '../../../src/auth/robot-tokens.ts';
import { AccessRules } from '../../../src/auth/rules.ts';
import { TokenService } from '../../../src/auth/token-service.ts';
import { RegistryError } from '../../../src/registry/errors.ts';
import { createLogger, silentLogger, type Logger } from '../../../src/util/logger.ts';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function setup(now: () => number, opts: { certificates?: CertificateMapping[]; log?: Logger } = {}) {
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
    certificates: new CertificateAccounts(opts.certificates),
    rules: new AccessRules([
      { accounts: ['node'], groups: [], repositories: ['docker.io/library/*'], roles: ['pull'] },
      { accounts: ['ops'], groups: [], repositories: ['**'], roles: ['admin'] },
    ]),
    anonymous: 'none',
    limiter: new FailureLimiter({ free: 2, now }),
    log: opts.log ?? silentLogger,
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

describe('Authenticator with client certificates', () => {
  it('takes the account a certificate names when no header is sent, from the cache the fast path reads', async () => {
    const { auth, checks } = setup(() => 1_000_000);
    const id = await auth.authenticate(undefined, '10.0.0.1', 'c', { certificate: 'node' });
    expect(id).toEqual({ kind: 'account', name: 'node', via: 'certificate' });
    expect(auth.cached(undefined, 'node')).toEqual(id);
    expect(auth.may(id, 'docker.io/library/alpine', 'library/alpine', 'pull')).toBe(true);
    expect(auth.may(id, 'docker.io/library/alpine', 'library/alpine', 'push')).toBe(false);
    expect(auth.isAdmin(id)).toBe(false);
    expect(auth.isAdmin(await auth.authenticate(undefined, '10.0.0.1', 'c', { certificate: 'ops' }))).toBe(true);
    expect(checks()).toBe(0);
  });

  it('lets the Authorization header count over the certificate: a wrong password is refused', async () => {
    const { auth } = setup(() => 1_000_000);
    await expect(auth.authenticate(basic('node', 'wrong'), '10.0.0.1', 'c', { certificate: 'node' })).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect(auth.cached(basic('node', 'wrong'), 'node')).toBeUndefined();
    // A good header for another account is that account, whatever the certificate says.
    await expect(auth.authenticate(basic('node', 'pw'), '10.0.0.1', 'c', { certificate: 'ops' })).resolves.toEqual({ kind: 'account', name: 'node' });
  });

  it('maps CNs by the configured list, and a CN that matches no entry is anonymous', async () => {
    const { auth } = setup(() => 1_000_000, { certificates: [{ cn: 'node-*', account: 'node' }] });
    expect(await auth.authenticate(undefined, '10.0.0.1', 'c', { certificate: 'node-42' })).toEqual({ kind: 'account', name: 'node', via: 'certificate' });
    expect(await auth.authenticate(undefined, '10.0.0.1', 'c', { certificate: 'ops' })).toEqual({ kind: 'anonymous' });
    expect(auth.cached(undefined, 'ops')).toEqual({ kind: 'anonymous' });
  });
});

describe('Authenticator with bad input', () => {
  const password = 'pw-SECRET-7f3a';
  const cases: Array<[string, string]> = [
    ['Basic without a value', 'Basic'],
    ['Basic with a blank value', 'Basic    '],
    ['Basic that is not base64', `Basic ${password}!!`],
    ['Basic whose base64 holds no colon', `Basic ${Buffer.from(password).toString('base64')}`],
    ['Bearer without a token', 'Bearer'],
    ['Bearer with a blank token', 'Bearer   '],
    ['Bearer with a token that is not a JWT', `Bearer ${password}`],
    ['an unknown scheme', `Digest username="node", response="${password}"`],
    ['a bare secret', Buffer.from(`node:${password}`).toString('base64')],
    ['an empty header', ''],
    ['control characters', `Basic \u0000\u0001${password}\u007f`],
    ['a user name over 256 bytes', basic('u'.repeat(300), password)],
    ['a password over 72 bytes whose first 72 are right', basic('node', `pw${'x'.repeat(80)}`)],
    ['a header over the limit', basic('node', password.padEnd(MAX_AUTHORIZATION_CHARS, 'z'))],
    ['a header of garbage', `${randomBytes(6000).toString('latin1')}`],
  ];

  it('refuses each with UNAUTHORIZED and the challenge, compares no password, and logs no secret', async () => {
    let text = '';
    const sink = new PassThrough();
    sink.on('data', (d: Buffer) => (text += d.toString()));
    let now = 1_000_000;
    const { auth, checks } = setup(() => now, { log: createLogger('info', sink) });
    for (const [what, header] of cases) {
      const err = await auth.authenticate(header, '10.0.0.1', 'Bearer realm="x"').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, what).toBeInstanceOf(RegistryError);
      expect((err as RegistryError).code, what).toBe('UNAUTHORIZED');
      expect((err as RegistryError).headers['WWW-Authenticate'], what).toBe('Bearer realm="x"');
      now += 3_600_000; // past the backoff the failure started
    }
    expect(checks()).toBe(0);
    const lines = text.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; user?: string; reason: string });
    expect(lines).toHaveLength(cases.length);
    expect(text).not.toContain('SECRET');
    expect(text).not.toContain(Buffer.from(`node:${password}`).toString('base64'));
    // A long user name is cut in the log.
    expect(Math.max(...lines.map((l) => l.user?.length ?? 0))).toBeLessThanOrEqual(65);
  });
});
