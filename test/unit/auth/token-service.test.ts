/**
 * @module test/unit/auth/token-service
 * Bearer tokens: what one grants survives the round trip, and a token that is expired, signed
 * with another key, unsigned (alg none), not valid yet (nbf) or minted for another service is refused.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UnsecuredJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { loadTokenKey, TokenService } from '../../../src/auth/token-service.ts';

const access = [{ type: 'repository' as const, name: 'library/alpine', actions: ['pull' as const] }];

describe('TokenService', () => {
  it('verifies its own tokens and returns their grants', async () => {
    const svc = new TokenService({ key: randomBytes(32), service: 'ocimirror', ttlMs: 300_000, now: () => 1_000_000_000 });
    const issued = await svc.issue('node', access);
    expect(issued.expiresIn).toBe(300);
    const verified = await svc.verify(issued.token);
    expect(verified).toEqual({ subject: 'node', access, expiresAt: (1_000_000 + 300) * 1000 });
  });

  it('refuses expired tokens, foreign keys, other services and unsigned tokens', async () => {
    let now = 1_000_000_000;
    const key = randomBytes(32);
    const svc = new TokenService({ key, service: 'ocimirror', ttlMs: 60_000, now: () => now });
    const token = (await svc.issue('node', access)).token;
    now += 61_000;
    expect(await svc.verify(token)).toBeUndefined();
    now -= 61_000;
    const other = new TokenService({ key: randomBytes(32), service: 'ocimirror', ttlMs: 60_000, now: () => now });
    expect(await other.verify(token)).toBeUndefined();
    const elsewhere = new TokenService({ key, service: 'another', ttlMs: 60_000, now: () => now });
    expect(await elsewhere.verify(token)).toBeUndefined();
    const unsigned = new UnsecuredJWT({ access }).setIssuer('ocimirror').setAudience('ocimirror').setSubject('node').setIssuedAt(now / 1000).setExpirationTime(now / 1000 + 60).encode();
    expect(await svc.verify(unsigned)).toBeUndefined();
    expect(await svc.verify(token)).toBeDefined();
  });

  it('refuses a token whose nbf is still in the future', async () => {
    let now = 1_000_000_000;
    const svc = new TokenService({ key: randomBytes(32), service: 'ocimirror', ttlMs: 300_000, now: () => now });
    now += 120_000;
    const early = (await svc.issue('node', access)).token;
    now -= 120_000;
    expect(await svc.verify(early)).toBeUndefined();
    now += 120_000;
    expect(await svc.verify(early)).toBeDefined();
  });

  it('generates a key into the data directory once and reads it back after', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'token-key-'));
    try {
      const first = loadTokenKey(undefined, dir);
      expect(first.length).toBeGreaterThanOrEqual(32);
      expect(Buffer.from(loadTokenKey(undefined, dir)).equals(Buffer.from(first))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
