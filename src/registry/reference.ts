/**
 * @module registry/reference
 * Repository names and tags, per OCI distribution-spec v1.1 "Pulling manifests":
 *   <name>      [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
 *   <reference> a tag [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} or a digest.
 * The grammar already excludes '.', '..', empty components and any character that could
 * escape a directory, which is why names may be used in cache keys after this check.
 */
import { RegistryError } from './errors.ts';
import { isDigest, parseDigest, type Digest } from './digest.ts';

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

/** A manifest reference: digest when it contains ':', else a tag. */
export function parseReference(text: string): Reference {
  if (text.includes(':')) return { kind: 'digest', digest: parseDigest(text) };
  if (!isValidTag(text)) {
    throw new RegistryError('TAG_INVALID', { message: 'invalid tag', detail: { reference: text.slice(0, 200) } });
  }
  return { kind: 'tag', tag: text };
}

export function referenceString(ref: Reference): string {
  return ref.kind === 'tag' ? ref.tag : ref.digest.value;
}

export { isDigest };
