/**
 * @module cache/metadata/manifest-references
 * What a manifest's bytes point at, one entry per referenced digest, with how it is referenced:
 *  - `manifest`: an entry of an index / manifest list (`manifests[]`, OCI image-spec image-index);
 *  - `blob`: an image manifest's `config` and `layers[]` (OCI image-spec manifest, Docker schema 2),
 *    or a Docker schema 1 manifest's `fsLayers[].blobSum`;
 *  - `subject`: the manifest a referrer (signature, SBOM) is about (OCI image-spec v1.1 `subject`).
 *
 * Anything that does not parse as such a document (foreign artifact types, non-JSON, digests other
 * than sha256) references nothing: it is still cached and served, it just holds on to nothing.
 * Pure parsing; the `refs` table these become is queried in metadata/references.
 */
import { readManifest } from '../../registry/manifest.ts';

export type RefKind = 'manifest' | 'blob' | 'subject';

export interface ManifestReference {
  readonly digest: string;
  readonly kind: RefKind;
}

/**
 * The digests a manifest's bytes reference, each once (first mention wins). Never throws:
 * unknown shapes give an empty list.
 */
export function manifestReferences(bytes: Buffer): ManifestReference[] {
  const content = readManifest(bytes);
  const out = new Map<string, RefKind>();
  const add = (digest: string, kind: RefKind) => {
    if (!out.has(digest)) out.set(digest, kind);
  };
  if (content.kind === 'index') for (const m of content.manifests) add(m.digest, 'manifest');
  if (content.kind === 'image') for (const d of content.config ? [content.config, ...content.layers] : content.layers) add(d.digest, 'blob');
  if (content.kind !== 'other' && content.subject) add(content.subject.digest, 'subject');
  return [...out].map(([digest, kind]) => ({ digest, kind }));
}
