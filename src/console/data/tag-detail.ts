/**
 * @module console/data/tag-detail
 * Everything the tag page shows, read from the cache alone (no upstream request): the digest and
 * media type the tag names, what its manifest holds (an index's platforms, an image's config and
 * layers with sizes, each marked cached or not), when it was last pulled and last confirmed
 * upstream (or pushed), and whether a pin holds it.
 */
import type { Metadata } from '../../cache/metadata/metadata.ts';
import type { Pins } from '../../cache/metadata/pins.ts';
import { formatImageRef, parseImageRef } from '../../registry/image-ref.ts';
import type { Source } from './sources.ts';

export interface Descriptor {
  digest: string;
  mediaType: string;
  size: number;
  /** Whether the cache holds it now (a blob file, or a manifest row for an index's child). */
  cached: boolean;
}

export interface PlatformChild extends Descriptor {
  /** `linux/amd64`, `linux/arm/v7`; `unknown/unknown` for attestations. */
  platform: string;
  /** Set for Docker's build attestations (vnd.docker.reference.type), which are not runnable images. */
  attestation: boolean;
}

export interface TagDetail {
  /** `<registry>/<repo>:<tag>`, as pins, prefetch and delete take it. */
  image: string;
  registry: string;
  digest: string;
  mediaType: string;
  /** When the upstream last confirmed the tag (cached) or it was pushed (hosted), epoch ms. */
  confirmedAt: number;
  /** The manifest, when it is cached. */
  manifest:
    | {
        size: number;
        /** Last served (batched access times: up to 30 s behind), epoch ms. */
        lastAccess: number;
        hits: number;
        kind: 'index' | 'image' | 'other';
        platforms: PlatformChild[];
        config: Descriptor | undefined;
        layers: Descriptor[];
      }
    | undefined;
  pin: { ref: string; source: 'config' | 'admin' } | undefined;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function descriptor(v: unknown, cached: (digest: string) => boolean): Descriptor | undefined {
  if (!isObject(v) || typeof v.digest !== 'string') return undefined;
  return { digest: v.digest, mediaType: typeof v.mediaType === 'string' ? v.mediaType : '', size: typeof v.size === 'number' ? v.size : 0, cached: cached(v.digest) };
}

function platformOf(v: Json): string {
  const p = isObject(v.platform) ? v.platform : {};
  const parts = [p.os, p.architecture, p.variant].filter((s): s is string => typeof s === 'string' && s !== '');
  return parts.length > 0 ? parts.join('/') : 'unspecified';
}

/** The parts of a manifest the page lists; an unparsable one lists nothing (its bytes are still served as they are). */
export function describeManifest(bytes: Buffer, metadata: Pick<Metadata, 'manifests' | 'blobs'>): Pick<NonNullable<TagDetail['manifest']>, 'kind' | 'platforms' | 'config' | 'layers'> {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { kind: 'other', platforms: [], config: undefined, layers: [] };
  }
  if (!isObject(doc)) return { kind: 'other', platforms: [], config: undefined, layers: [] };
  const hasManifest = (d: string) => metadata.manifests.has(d);
  const hasBlob = (d: string) => metadata.blobs.get(d) !== undefined;
  if (Array.isArray(doc.manifests)) {
    const platforms = doc.manifests.flatMap((m): PlatformChild[] => {
      const d = descriptor(m, hasManifest);
      if (!d || !isObject(m)) return [];
      const annotations = isObject(m.annotations) ? m.annotations : {};
      return [{ ...d, platform: platformOf(m), attestation: typeof annotations['vnd.docker.reference.type'] === 'string' }];
    });
    return { kind: 'index', platforms, config: undefined, layers: [] };
  }
  if (Array.isArray(doc.layers)) {
    return { kind: 'image', platforms: [], config: descriptor(doc.config, hasBlob), layers: doc.layers.flatMap((l) => descriptor(l, hasBlob) ?? []) };
  }
  return { kind: 'other', platforms: [], config: undefined, layers: [] };
}

/** The image reference the mirror's pins and jobs take for a tag of a source. */
export function imageRef(source: Source, repo: string, tag: string): string {
  return `${source.registries[0] ?? source.name}/${repo}:${tag}`;
}

export function tagDetail(metadata: Metadata, pins: Pins, source: Source, repo: string, tag: string): TagDetail | undefined {
  let row: { digest: string; mediaType: string; at: number } | undefined;
  if (source.kind === 'upstream') {
    const t = metadata.getTag(source.name, repo, tag);
    row = t && { digest: t.digest, mediaType: t.mediaType, at: t.fetchedAt };
  } else {
    const t = metadata.hosted.tag(source.name, repo, tag);
    row = t && { digest: t.digest, mediaType: t.mediaType, at: t.pushedAt };
  }
  if (!row) return undefined;
  const m = metadata.getManifest(row.digest);
  const access = m ? metadata.manifests.access(row.digest) : undefined;
  // A pin names the image under any of the upstream's registry names; all normalise the same way.
  const wanted = new Set(
    source.registries.flatMap((r) => {
      try {
        return [formatImageRef(parseImageRef(`${r}/${repo}:${tag}`))];
      } catch {
        return [];
      }
    }),
  );
  const pin = pins.list().find((p) => wanted.has(p.ref));
  return {
    image: imageRef(source, repo, tag),
    registry: source.registries[0] ?? source.name,
    digest: row.digest,
    mediaType: row.mediaType,
    confirmedAt: row.at,
    manifest: m && { size: m.bytes.length, lastAccess: access?.lastAccess ?? 0, hits: access?.hits ?? 0, ...describeManifest(m.bytes, metadata) },
    pin: pin && { ref: pin.ref, source: pin.source },
  };
}
