/**
 * @module cluster/peer-auth
 * The shared secret replicas present to each other (`Authorization: Bearer <secret>`). It is
 * compared as sha256 digests with timingSafeEqual, so neither its length nor a matching prefix
 * shows in response times; it is never logged nor put in an error message.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const digestOf = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export class PeerAuth {
  readonly #expected: Buffer;
  readonly #header: string;

  constructor(secret: string) {
    this.#expected = digestOf(secret);
    this.#header = `Bearer ${secret}`;
  }

  /** Whether an Authorization header value carries the cluster's secret. */
  verify(authorization: string | undefined): boolean {
    const given = /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1];
    if (given === undefined) return false;
    return timingSafeEqual(digestOf(given), this.#expected);
  }

  /** The headers an outgoing peer request carries. */
  headers(): Record<string, string> {
    return { authorization: this.#header };
  }

  /** Never the secret itself, whoever logs or serialises this object. */
  toJSON(): string {
    return '[cluster secret]';
  }
}
