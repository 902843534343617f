/**
 * @module registry/manifest
 * What a manifest points at, read from its JSON (OCI image-spec v1.1 image manifest and image
 * index; Docker schema2 manifest and manifest list share the shape): an index lists platform
 * manifests, an image manifest a config and layers (and optionally a `subject`). Anything that
 * does not parse as either is 'other' and points at nothing ocimirror follows. A Docker schema1
 * manifest's `fsLayers[].blobSum` count as an image's layers.
 */

export interface Descriptor {
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string | undefined;
}

export interface PlatformDescriptor extends Descriptor {
  readonly platform: { readonly os?: string; readonly architecture?: string; readonly variant?: string } | undefined;
}

export type ManifestContent =
  | { kind: 'index'; manifests: PlatformDescriptor[]; subject: Descriptor | undefined }
  | { kind: 'image'; config: Descriptor | undefined; layers: Descriptor[]; subject: Descriptor | undefined }
  | { kind: 'other' };

function descriptor(value: unknown): Descriptor | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const d = value as { digest?: unknown; size?: unknown; mediaType?: unknown };
  if (typeof d.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d.digest)) return undefined;
  return { digest: d.digest, size: typeof d.size === 'number' ? d.size : 0, mediaType: typeof d.mediaType === 'string' ? d.mediaType : undefined };
}

export function readManifest(bytes: Buffer): ManifestContent {
  let doc: { manifests?: unknown; layers?: unknown; config?: unknown; subject?: unknown; fsLayers?: unknown };
  try {
    doc = JSON.parse(bytes.toString('utf8')) as typeof doc;
  } catch {
    return { kind: 'other' };
  }
  if (!doc || typeof doc !== 'object') return { kind: 'other' };
  const subject = descriptor(doc.subject);
  if (Array.isArray(doc.manifests)) {
    const manifests: PlatformDescriptor[] = [];
    for (const m of doc.manifests) {
      const d = descriptor(m);
      if (d) manifests.push({ ...d, platform: (m as { platform?: PlatformDescriptor['platform'] }).platform });
    }
    return { kind: 'index', manifests, subject };
  }
  if (Array.isArray(doc.layers)) {
    return { kind: 'image', config: descriptor(doc.config), layers: doc.layers.map(descriptor).filter((d): d is Descriptor => d !== undefined), subject };
  }
  if (Array.isArray(doc.fsLayers)) {
    const layers = doc.fsLayers.map((l) => descriptor({ digest: (l as { blobSum?: unknown } | null)?.blobSum })).filter((d): d is Descriptor => d !== undefined);
    return { kind: 'image', config: undefined, layers, subject };
  }
  return { kind: 'other' };
}

/** Whether an index entry matches one of `platforms` ('os/arch' or 'os/arch/variant'); [] matches all. */
export function matchesPlatform(entry: PlatformDescriptor, platforms: readonly string[]): boolean {
  if (platforms.length === 0) return true;
  const p = entry.platform;
  if (!p) return false;
  return platforms.some((want) => {
    const [os, arch, variant] = want.toLowerCase().split('/');
    return p.os?.toLowerCase() === os && p.architecture?.toLowerCase() === arch && (variant === undefined || p.variant?.toLowerCase() === variant);
  });
}
