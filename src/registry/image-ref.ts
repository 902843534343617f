/**
 * @module registry/image-ref
 * Image references as people write them (`alpine`, `docker.io/library/alpine:3.19`,
 * `ghcr.io/org/app@sha256:…`, `ghcr.io/org/app:*` in a watch list), normalised the way Docker
 * does (distribution/reference): no registry means docker.io, a one-component docker.io name
 * gets `library/`, no tag means `latest`.
 */
import { RegistryError } from './errors.ts';
import { parseDigest } from './digest.ts';
import { assertName, isValidTag } from './reference.ts';

export interface ImageRef {
  /** Registry host as clients name it, e.g. docker.io, ghcr.io, localhost:5000. */
  readonly registry: string;
  readonly repo: string;
  /** A tag, '*' (every tag; watch lists only), or undefined when pinned by digest. */
  readonly tag: string | undefined;
  readonly digest: string | undefined;
  /**
   * The name a pull of this text puts after /v2/: `<registry>/<repo>` when the text names a
   * registry, else the repository as written ('alpine'), which a mirror sends to its default upstream.
   */
  readonly pullName: string;
}

export function parseImageRef(text: string, { allowWildcard = false } = {}): ImageRef {
  const input = text.trim();
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = parseDigest(rest.slice(at + 1)).value;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!(isValidTag(tag) || (allowWildcard && tag === '*'))) {
      throw new RegistryError('TAG_INVALID', { message: `invalid tag in image reference '${input}'` });
    }
  }
  const slash = rest.indexOf('/');
  const first = slash === -1 ? '' : rest.slice(0, slash);
  const hasRegistry = first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost');
  const registry = (hasRegistry ? first : 'docker.io').toLowerCase();
  let repo = hasRegistry ? rest.slice(slash + 1) : rest;
  const written = repo;
  if (registry === 'docker.io' && !repo.includes('/')) repo = `library/${repo}`;
  assertName(repo);
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repo, tag, digest, pullName: hasRegistry ? `${registry}/${repo}` : written };
}

export function formatImageRef(ref: ImageRef): string {
  return `${ref.registry}/${ref.repo}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}
