/**
 * @module registry/media-types
 * Manifest media types ocimirror knows (OCI image-spec v1.1, Docker image manifest v2 schema 2),
 * and the Accept negotiation a cached manifest must pass before it is served.
 */

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
} as const;

/** What the mirror asks an upstream for when it resolves a tag for itself (prefetch, revalidation). */
export const ALL_MANIFEST_TYPES = [
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.dockerList,
  MEDIA_TYPES.dockerManifest,
] as const;

export const DEFAULT_ACCEPT = ALL_MANIFEST_TYPES.join(', ');

export function isIndexType(mediaType: string): boolean {
  return mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerList;
}

/**
 * Media types named in one or more Accept headers, without parameters; '*\/*' kept as is.
 * A type with weight `q=0` is left out: RFC 9110 §12.4.2, "a value of 0 means 'not acceptable'".
 */
export function parseAccept(values: readonly string[] | string | undefined): string[] {
  const list = Array.isArray(values) ? values : values === undefined ? [] : [values];
  const out: string[] = [];
  for (const v of list) {
    for (const part of v.split(',')) {
      const [first, ...params] = part.split(';');
      const type = first?.trim().toLowerCase();
      if (type && !params.some(isZeroWeight)) out.push(type);
    }
  }
  return out;
}

function isZeroWeight(param: string): boolean {
  const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(param);
  return m !== null && Number(m[1]) === 0;
}

/**
 * Whether a stored manifest of `mediaType` may answer a request with this Accept list. No
 * Accept, or a wildcard, accepts anything: containerd sends '*\/*' alongside the specific types.
 */
export function acceptsMediaType(accept: readonly string[], mediaType: string): boolean {
  if (accept.length === 0) return true;
  const type = mediaType.toLowerCase();
  return accept.some((a) => a === type || a === '*/*' || (a.endsWith('/*') && type.startsWith(a.slice(0, -1))));
}

/** Media type a manifest declares in its own `mediaType` field, if it parses as JSON. */
export function declaredMediaType(bytes: Buffer): string | undefined {
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
    return typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  } catch {
    return undefined;
  }
}
