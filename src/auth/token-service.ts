/**
 * @module auth/token-service
 * Short-lived bearer tokens for the Docker token flow: HS256 JWTs (jose) signed with a key read
 * from `auth.tokenKey` or generated once into the data directory, so tokens outlive a restart.
 * A token names its service as issuer and audience, so one minted for another service is refused,
 * and lists the repository actions it grants (distribution's `access` claim).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { jwtVerify, SignJWT } from 'jose';
import type { Action } from './rules.ts';

export interface AccessEntry {
  type: 'repository';
  name: string;
  actions: Action[];
}

export interface IssuedToken {
  token: string;
  expiresIn: number;
  issuedAt: string;
}

export interface VerifiedToken {
  subject: string;
  access: AccessEntry[];
  /** ms since the epoch. */
  expiresAt: number;
}

const MIN_KEY_BYTES = 32;

/** The configured key file, or one generated into `dataDir` (mode 0600) and kept there. */
export function loadTokenKey(configured: string | undefined, dataDir: string): Uint8Array {
  if (configured !== undefined) {
    const key = readFileSync(configured);
    if (key.length < MIN_KEY_BYTES) throw new Error(`auth.tokenKey ${configured} holds ${key.length} bytes; at least ${MIN_KEY_BYTES} are needed`);
    return key;
  }
  const file = path.join(dataDir, 'auth', 'token.key');
  try {
    return readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(file, randomBytes(48), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return readFileSync(file);
}

export class TokenService {
  readonly #key: Uint8Array;
  readonly #service: string;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor({ key, service, ttlMs, now = Date.now }: { key: Uint8Array; service: string; ttlMs: number; now?: () => number }) {
    this.#key = key;
    this.#service = service;
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  get service(): string {
    return this.#service;
  }

  async issue(subject: string, access: AccessEntry[]): Promise<IssuedToken> {
    const now = this.#now();
    const iat = Math.floor(now / 1000);
    const exp = iat + Math.max(1, Math.floor(this.#ttlMs / 1000));
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(this.#service)
      .setAudience(this.#service)
      .setSubject(subject)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(exp)
      .setJti(randomBytes(12).toString('base64url'))
      .sign(this.#key);
    return { token, expiresIn: exp - iat, issuedAt: new Date(iat * 1000).toISOString() };
  }

  /** The token's grants, or undefined for a forged, expired, malformed or foreign token. */
  async verify(token: string): Promise<VerifiedToken | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        algorithms: ['HS256'],
        issuer: this.#service,
        audience: this.#service,
        currentDate: new Date(this.#now()),
        requiredClaims: ['exp', 'sub'],
      });
      const access = Array.isArray(payload.access) ? (payload.access as AccessEntry[]).filter((a) => a && a.type === 'repository' && typeof a.name === 'string' && Array.isArray(a.actions)) : [];
      return { subject: payload.sub ?? '', access, expiresAt: (payload.exp as number) * 1000 };
    } catch {
      return undefined;
    }
  }
}
