/**
 * @module auth/robot-tokens
 * Robot tokens: long random secrets for machines (CI, nodes), created and revoked through the
 * admin API. A token reads `omr_<id>_<secret>`: the id is public (listing, revoking), the 256-bit
 * secret is shown once and only its SHA-256 is stored; a fast hash suffices for a random secret
 * of that size, where a password would need bcrypt. Each token carries one role on every repository.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RobotTokenQueries, RobotTokenRow } from '../cache/metadata/robot-token-queries.ts';
import type { Role } from './rules.ts';

export const ROBOT_PREFIX = 'omr_';
const FORMAT = /^omr_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const DUMMY = Buffer.alloc(32);

export interface RobotToken {
  id: string;
  role: Role;
  description: string;
  createdAt: string;
  expiresAt: string | null;
  expired: boolean;
}

export interface VerifiedRobot {
  id: string;
  role: Role;
  /** ms since the epoch, or undefined for a token that never expires. */
  expiresAt: number | undefined;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export class RobotTokens {
  readonly #rows: RobotTokenQueries;
  readonly #now: () => number;
  /** Called after a token was revoked (cached authentications are dropped). */
  onRevoke: (() => void) | undefined;

  constructor(rows: RobotTokenQueries, now: () => number = Date.now) {
    this.#rows = rows;
    this.#now = now;
  }

  /** Creates a token; the secret is in the returned `token` and nowhere else. */
  create({ role, description, ttlMs }: { role: Role; description: string; ttlMs?: number | undefined }): RobotToken & { token: string } {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const now = this.#now();
    const row: RobotTokenRow = { id, hash: sha256(secret), role, description, createdAt: now, expiresAt: ttlMs ? now + ttlMs : null };
    this.#rows.insert(row);
    return { ...this.#view(row), token: `${ROBOT_PREFIX}${id}_${secret}` };
  }

  list(): RobotToken[] {
    return this.#rows.all().map((r) => this.#view(r));
  }

  revoke(id: string): boolean {
    const removed = this.#rows.remove(id);
    if (removed) this.onRevoke?.();
    return removed;
  }

  /** The token's id and role, or undefined for a malformed, unknown, revoked or expired token. */
  verify(token: string): VerifiedRobot | undefined {
    const m = FORMAT.exec(token);
    if (!m) return undefined;
    const row = this.#rows.get(m[1] as string);
    // Compared in constant time, against zeros when the id is unknown, so timing tells nothing about the secret.
    const match = timingSafeEqual(sha256(m[2] as string), row?.hash.length === 32 ? row.hash : DUMMY);
    if (!row || !match) return undefined;
    if (row.expiresAt !== null && this.#now() >= row.expiresAt) return undefined;
    return { id: row.id, role: row.role as Role, expiresAt: row.expiresAt ?? undefined };
  }

  #view(r: RobotTokenRow): RobotToken {
    return {
      id: r.id,
      role: r.role as Role,
      description: r.description,
      createdAt: new Date(r.createdAt).toISOString(),
      expiresAt: r.expiresAt === null ? null : new Date(r.expiresAt).toISOString(),
      expired: r.expiresAt !== null && this.#now() >= r.expiresAt,
    };
  }
}
