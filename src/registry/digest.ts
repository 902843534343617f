/**
 * @module registry/digest
 * Digests per OCI image-spec "Digests": `algorithm ":" encoded`. Only sha256 and sha512 are
 * registered; ocimirror stores and verifies sha256 only, and refuses anything else as
 * DIGEST_INVALID, because an unverifiable digest must never become a cache key or a file name.
 */
import { RegistryError } from './errors.ts';

export interface Digest {
  readonly algorithm: 'sha256';
  /** 64 lower-case hex characters: safe as a file name. */
  readonly hex: string;
  /** `sha256:<hex>` */
  readonly value: string;
}

const SHA256 = /^sha256:([a-f0-9]{64})$/;
/** The spec's general grammar, to tell "unsupported algorithm" from "garbage" in messages. */
const GENERAL = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function parseDigest(text: string): Digest {
  const m = SHA256.exec(text);
  if (m) return { algorithm: 'sha256', hex: m[1] as string, value: text };
  const detail = { digest: text.slice(0, 200) };
  if (GENERAL.test(text)) {
    throw new RegistryError('DIGEST_INVALID', { message: 'unsupported digest algorithm or encoding: only sha256 with 64 lower-case hex digits is accepted', detail });
  }
  throw new RegistryError('DIGEST_INVALID', { message: 'invalid digest format', detail });
}

/**
 * Whether `text` has the shape of a digest (`algorithm:encoded`, any algorithm), whatever its
 * value: a reference of that shape with a bad value is DIGEST_INVALID, not some other error.
 */
export function isDigestShaped(text: string): boolean {
  return GENERAL.test(text);
}

export function isDigest(text: string): boolean {
  return SHA256.test(text);
}
