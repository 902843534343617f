/**
 * @module test/unit/auth/robot-tokens
 * Robot tokens in the metadata database: the secret is shown once and stored hashed, and a token
 * stops verifying when it expires or is revoked.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Metadata } from '../../../src/cache/metadata/metadata.ts';
import { RobotTokens } from '../../../src/auth/robot-tokens.ts';

describe('RobotTokens', () => {
  let dir: string;
  let metadata: Metadata;
  let now = 1_700_000_000_000;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'robot-tokens-'));
    metadata = new Metadata(path.join(dir, 'db.sqlite'), { flushIntervalMs: 3_600_000 });
  });
  afterEach(() => {
    metadata.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('verifies a new token until it expires, and never stores or lists its secret', () => {
    const robots = new RobotTokens(metadata.robotTokens, () => now);
    const made = robots.create({ role: 'push', description: 'ci', ttlMs: 60_000 });
    expect(robots.verify(made.token)).toEqual({ id: made.id, role: 'push', expiresAt: now + 60_000 });
    const secret = made.token.split('_').slice(2).join('_');
    expect(JSON.stringify(robots.list())).not.toContain(secret);
    expect(metadata.robotTokens.get(made.id)!.hash.toString('utf8')).not.toContain(secret);
    now += 60_000;
    expect(robots.verify(made.token)).toBeUndefined();
    expect(robots.list()[0]!.expired).toBe(true);
  });

  it('refuses revoked, altered and malformed tokens', () => {
    const robots = new RobotTokens(metadata.robotTokens, () => now);
    let revoked = 0;
    robots.onRevoke = () => revoked++;
    const made = robots.create({ role: 'pull', description: 'node' });
    const last = made.token.at(-1) === 'A' ? 'B' : 'A';
    expect(robots.verify(made.token.slice(0, -1) + last)).toBeUndefined();
    expect(robots.verify('omr_nothex_x')).toBeUndefined();
    expect(robots.revoke(made.id)).toBe(true);
    expect(revoked).toBe(1);
    expect(robots.verify(made.token)).toBeUndefined();
    expect(robots.revoke(made.id)).toBe(false);
  });
});
