/**
 * @module console/csrf
 * CSRF tokens for console forms: `<expiry>.<HMAC(key, binding, expiry)>`, bound to a session id
 * (or to the login page's nonce cookie before anyone signed in). A page on another origin can
 * neither read the token nor compute it without the key, which is random per process.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface CsrfOptions {
  key?: Buffer;
  now?: () => number;
}

export class CsrfTokens {
  readonly #key: Buffer;
  readonly #now: () => number;

  constructor({ key = randomBytes(32), now = Date.now }: CsrfOptions = {}) {
    this.#key = key;
    this.#now = now;
  }

  /** A token for forms posted on behalf of `binding`, valid until `expiresAt` (epoch ms). */
  issue(binding: string, expiresAt: number): string {
    const expiry = Math.floor(expiresAt).toString(36);
    return `${expiry}.${this.#mac(binding, expiry)}`;
  }

  /** Whether `token` was issued for `binding` and has not expired. */
  verify(binding: string | undefined, token: string | undefined): boolean {
    if (binding === undefined || token === undefined || token.length > 200) return false;
    const dot = token.indexOf('.');
    if (dot <= 0) return false;
    const expiry = token.slice(0, dot);
    const expiresAt = Number.parseInt(expiry, 36);
    if (!/^[0-9a-z]+$/.test(expiry) || !Number.isSafeInteger(expiresAt) || this.#now() >= expiresAt) return false;
    const given = Buffer.from(token.slice(dot + 1));
    const expected = Buffer.from(this.#mac(binding, expiry));
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  #mac(binding: string, expiry: string): string {
    return createHmac('sha256', this.#key).update(`${binding}\n${expiry}`).digest('base64url');
  }
}
