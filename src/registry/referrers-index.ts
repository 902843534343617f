/**
 * @module registry/referrers-index
 * The referrers API answer (distribution-spec v1.1 "Listing Referrers"): an OCI image index whose
 * entries describe the manifests of a repository with a given `subject`. Each descriptor carries
 * the manifest's `artifactType`, else (image manifests only) its config's media type, and the
 * manifest's annotations. Pure: hosted repositories and the cache's own referrers build it.
 */
import { MEDIA_TYPES } from './media-types.ts';

export interface ReferrerDescriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface ReferrersIndex {
  readonly schemaVersion: 2;
  readonly mediaType: typeof MEDIA_TYPES.ociIndex;
  readonly manifests: readonly ReferrerDescriptor[];
}

/** The descriptor of a stored referrer; undefined when its bytes no longer parse (nothing to describe). */
export function referrerDescriptor(row: { digest: string; mediaType: string; bytes: Buffer }): ReferrerDescriptor | undefined {
  let doc: { artifactType?: unknown; config?: { mediaType?: unknown }; annotations?: unknown; manifests?: unknown };
  try {
    doc = JSON.parse(row.bytes.toString('utf8')) as typeof doc;
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null) return undefined;
  const isIndex = Array.isArray(doc.manifests);
  const artifactType =
    typeof doc.artifactType === 'string' && doc.artifactType !== ''
      ? doc.artifactType
      : !isIndex && typeof doc.config?.mediaType === 'string'
        ? doc.config.mediaType
        : undefined;
  const annotations = typeof doc.annotations === 'object' && doc.annotations !== null && !Array.isArray(doc.annotations) ? (doc.annotations as Record<string, string>) : undefined;
  return {
    mediaType: row.mediaType,
    digest: row.digest,
    size: row.bytes.length,
    ...(artifactType !== undefined ? { artifactType } : {}),
    ...(annotations !== undefined && Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
}

export function referrersIndex(manifests: readonly ReferrerDescriptor[]): ReferrersIndex {
  return { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests };
}
