/**
 * @module proxy/hosted/pushed-manifest
 * Reads a manifest a client pushes to a hosted repository and refuses what cannot be stored and
 * served back (MANIFEST_INVALID, or MANIFEST_TOO_LARGE, a 413): a size over the limit, bytes that
 * are not a JSON object, a media type outside the four the mirror serves (OCI image manifest and
 * index, Docker schema 2 manifest and manifest list; an artifact is an OCI image manifest with
 * `artifactType`), a body `mediaType` that contradicts the Content-Type, or descriptors without a
 * sha256 digest, a media type and a size. Pure: whether the referenced content exists is the
 * caller's question (proxy/hosted/hosted-repository).
 *
 * Shapes per OCI image-spec v1.1 (manifest.md, image-index.md, descriptor.md) and Docker image
 * manifest v2 schema 2. Parameters on the Content-Type are ignored, as distribution-spec
 * "Pushing Manifests" asks of registries.
 */
import { RegistryError } from '../../registry/errors.ts';
import { isDigest } from '../../registry/digest.ts';
import { MEDIA_TYPES } from '../../registry/media-types.ts';

/**
 * distribution-spec "Pushing Manifests": implementations "SHOULD expect to be able to support
 * manifest pushes of at least 4 megabytes"; distribution's own limit is the same 4 MiB.
 */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

const IMAGE_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
const INDEX_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerList]);

export interface PushedDescriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  /** Set for foreign (non-distributable) layers: the content lives at these URLs, not here. */
  readonly external: boolean;
}

export interface PushedManifest {
  readonly kind: 'image' | 'index';
  readonly mediaType: string;
  /** Image manifests only. */
  readonly config: PushedDescriptor | undefined;
  /** Image manifests: the layers. */
  readonly layers: readonly PushedDescriptor[];
  /** Indexes: the entries. */
  readonly manifests: readonly PushedDescriptor[];
  readonly subject: PushedDescriptor | undefined;
  readonly artifactType: string | undefined;
  readonly annotations: Readonly<Record<string, string>> | undefined;
}

/** The media type of a Content-Type header value: parameters dropped, lower-cased; undefined when empty. */
export function contentMediaType(contentType: string | undefined): string | undefined {
  const type = contentType?.split(';')[0]?.trim().toLowerCase();
  return type ? type : undefined;
}

/** Validates a pushed manifest's bytes against its Content-Type; throws a RegistryError when it is refused. */
export function readPushedManifest(contentType: string | undefined, bytes: Buffer): PushedManifest {
  if (bytes.length > MANIFEST_MAX_BYTES) {
    throw new RegistryError('MANIFEST_TOO_LARGE', {
      message: `manifest of ${bytes.length} bytes is over the limit of ${MANIFEST_MAX_BYTES} bytes`,
      detail: { size: bytes.length, limit: MANIFEST_MAX_BYTES },
    });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    throw invalid('the manifest is not valid JSON', undefined, cause);
  }
  if (!isObject(doc)) throw invalid('the manifest is not a JSON object');
  if (doc.schemaVersion !== 2) throw invalid('schemaVersion must be 2', { schemaVersion: doc.schemaVersion ?? null });
  const header = contentMediaType(contentType);
  const declared = doc.mediaType;
  if (declared !== undefined && typeof declared !== 'string') throw invalid('mediaType must be a string');
  // Clients "MUST set the Content-Type header to the value specified by the mediaType field".
  if (declared !== undefined && header !== undefined && declared.toLowerCase() !== header) {
    throw invalid(`the manifest's mediaType '${declared}' differs from its Content-Type '${header}'`, { mediaType: declared, contentType: header });
  }
  const mediaType = (declared ?? header)?.toLowerCase();
  if (mediaType === undefined) throw invalid('the manifest has neither a mediaType field nor a Content-Type');
  const subject = doc.subject === undefined ? undefined : descriptor(doc.subject, 'subject');
  const artifactType = optionalString(doc.artifactType, 'artifactType');
  const annotations = stringMap(doc.annotations, 'annotations');
  if (IMAGE_TYPES.has(mediaType)) {
    if (!Array.isArray(doc.layers)) throw invalid('an image manifest needs a layers array');
    if (doc.config === undefined) throw invalid('an image manifest needs a config descriptor');
    return {
      kind: 'image',
      mediaType,
      config: descriptor(doc.config, 'config'),
      layers: doc.layers.map((l, i) => descriptor(l, `layers[${i}]`)),
      manifests: [],
      subject,
      artifactType,
      annotations,
    };
  }
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid('an index needs a manifests array');
    return {
      kind: 'index',
      mediaType,
      config: undefined,
      layers: [],
      manifests: doc.manifests.map((m, i) => descriptor(m, `manifests[${i}]`)),
      subject,
      artifactType,
      annotations,
    };
  }
  throw invalid(`manifest media type '${mediaType}' is not one this registry stores`, { mediaType });
}

function descriptor(value: unknown, where: string): PushedDescriptor {
  if (!isObject(value)) throw invalid(`${where} is not a descriptor`);
  const { mediaType, digest, size, urls } = value;
  if (typeof mediaType !== 'string' || mediaType === '') throw invalid(`${where} has no mediaType`);
  if (typeof digest !== 'string' || !isDigest(digest)) throw invalid(`${where} needs a sha256 digest`, { digest: typeof digest === 'string' ? digest.slice(0, 200) : null });
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`${where} needs a size in bytes`, { digest });
  return { mediaType, digest, size, external: Array.isArray(urls) && urls.length > 0 };
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalid(`${where} must be a string`);
  return value;
}

function stringMap(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'string')) throw invalid(`${where} must map strings to strings`);
  return value as Record<string, string>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(message: string, detail?: unknown, cause?: unknown): RegistryError {
  return new RegistryError('MANIFEST_INVALID', { message, detail, cause });
}
