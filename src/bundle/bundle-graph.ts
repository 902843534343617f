/**
 * @module bundle/bundle-graph
 * What an image consists of, walked from its top manifest: the manifests (an index and the
 * platform manifests it lists) and the blobs (configs and layers), each digest once. Export
 * walks the cache; import walks the bundle; `--since` walks an earlier bundle's images.
 */
import { matchesPlatform, readManifest, type Descriptor } from '../registry/manifest.ts';

export interface GraphManifest {
  readonly digest: string;
  readonly mediaType: string | undefined;
  readonly bytes: Buffer;
}

export interface ImageGraph {
  /** Children before parents, the top last: the order a registry accepts them in. */
  readonly manifests: GraphManifest[];
  readonly blobs: Map<string, Descriptor>;
  /** Manifests listed by an index but not found (platforms left out, or not stored). */
  readonly missingManifests: Descriptor[];
}

/**
 * Walks from `top`. `lookup` gives a manifest's bytes by digest (undefined when absent);
 * `platforms` limits which entries of an index are followed ([] = all).
 */
export function walkImage(top: GraphManifest, lookup: (d: Descriptor) => Buffer | undefined, platforms: readonly string[]): ImageGraph {
  const manifests: GraphManifest[] = [];
  const blobs = new Map<string, Descriptor>();
  const missingManifests: Descriptor[] = [];
  const seen = new Set<string>();
  const visit = (m: GraphManifest) => {
    if (seen.has(m.digest)) return;
    seen.add(m.digest);
    const content = readManifest(m.bytes);
    if (content.kind === 'index') {
      for (const child of content.manifests) {
        if (!matchesPlatform(child, platforms)) continue;
        const bytes = lookup(child);
        if (bytes === undefined) missingManifests.push(child);
        else visit({ digest: child.digest, mediaType: child.mediaType, bytes });
      }
    } else if (content.kind === 'image') {
      for (const d of content.config ? [content.config, ...content.layers] : content.layers) blobs.set(d.digest, d);
    }
    manifests.push(m);
  };
  visit(top);
  return { manifests, blobs, missingManifests };
}
