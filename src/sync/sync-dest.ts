/**
 * @module sync/sync-dest
 * Where a sync puts images: the cache (`cache`, the default: under the source's own name, so the
 * next pull through the mirror is a hit), or a hosted registry of this mirror with an optional
 * repository prefix (`registry.internal/mirrored`: `docker.io/library/alpine` lands in
 * `registry.internal/mirrored/library/alpine`, as skopeo sync names its destinations).
 */
import { isValidName } from '../registry/reference.ts';

export type SyncDest =
  | { readonly kind: 'cache' }
  | { readonly kind: 'hosted'; readonly registry: string; readonly prefix: string | undefined };

/** A --dest the mirror cannot take; the message says what it can. */
export class SyncDestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SyncDestError';
  }
}

/** `cache`, or `<hosted registry>[/<prefix>]` naming one of `hosted` (the config's hosted[].name). */
export function parseDest(text: string | undefined, hosted: readonly string[]): SyncDest {
  const value = (text ?? 'cache').trim().replace(/\/+$/, '');
  if (value === 'cache') return { kind: 'cache' };
  const slash = value.indexOf('/');
  const registry = (slash === -1 ? value : value.slice(0, slash)).toLowerCase();
  const prefix = slash === -1 ? undefined : value.slice(slash + 1);
  if (!hosted.includes(registry)) {
    const known = hosted.length === 0 ? 'this mirror has none: add one under hosted: in its config' : `this mirror has ${hosted.join(', ')}`;
    throw new SyncDestError(`--dest ${value}: expected 'cache' or a hosted registry with an optional repository prefix (${known})`);
  }
  if (prefix !== undefined && !isValidName(prefix)) {
    throw new SyncDestError(`--dest ${value}: '${prefix}' is not a valid repository prefix (lower-case path components such as mirrored or team/base)`);
  }
  return { kind: 'hosted', registry, prefix };
}

/** The hosted repository an image of `sourceRepo` goes to. */
export function destRepository(dest: Extract<SyncDest, { kind: 'hosted' }>, sourceRepo: string): string {
  return dest.prefix === undefined ? sourceRepo : `${dest.prefix}/${sourceRepo}`;
}

export function formatDest(dest: SyncDest): string {
  return dest.kind === 'cache' ? 'cache' : dest.prefix === undefined ? dest.registry : `${dest.registry}/${dest.prefix}`;
}
