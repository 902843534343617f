/**
 * @module registry/reference
 * Repository names and tags, per OCI distribution-spec v1.1 "Pulling manifests":
 *   <name>      [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
 *   <reference> a tag [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} or a digest.
 * The grammar already excludes '.', '..', empty components and any character that could
 * escape a directory, which is why names may be used in cache keys after this check.
 * A reference that is neither is not a malformed request but one the spec's manifest route does
 * not match, so no manifest can have it: MANIFEST_UNKNOWN (404), as distribution answers. Only
 * text of the digest shape `algorithm:encoded` with a value ocimirror cannot verify is DIGEST_INVALID.
 */
import { RegistryError } from './errors.ts';
import { isDigest, isDigestShaped, parseDigest, type Digest } from './digest.ts';

const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** distribution limits a repository name to 255 characters (reference.NameTotalLengthMax). */
const NAME_MAX = 255;

export function isValidName(name: string): boolean {
  return name.length <= NAME_MAX && NAME.test(name);
}

export function assertName(name: string): string {
  if (!isValidName(name)) {
    throw new RegistryError('NAME_INVALID', { message: 'invalid repository name', detail: { name: name.slice(0, 300) } });
  }
  return name;
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

export type Reference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

/** A manifest reference: a tag, else a digest; anything else names no manifest. */
export function parseReference(text: string): Reference {
  if (isValidTag(text)) return { kind: 'tag', tag: text };
  if (isDigestShaped(text)) return { kind: 'digest', digest: parseDigest(text) };
  throw new RegistryError('MANIFEST_UNKNOWN', {
    message: 'the manifest reference is neither a tag nor a digest',
    detail: { reference: text.slice(0, 200) },
  });
}

export function referenceString(ref: Reference): string {
  return ref.kind === 'tag' ? ref.tag : ref.digest.value;
}

export { isDigest };
