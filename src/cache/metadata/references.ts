/**
 * @module cache/metadata/references
 * What a cached manifest points at, so eviction, deletion, pins and gc can follow an image from
 * its tag down to every blob (and back up from a blob to every manifest that needs it).
 *
 * The `refs` table (cache/metadata) holds one row per (parent manifest, child digest):
 *  - `manifest`: an entry of an index / manifest list (`manifests[]`, OCI image-spec image-index);
 *  - `blob`: an image manifest's `config` and `layers[]` (OCI image-spec manifest, Docker schema 2),
 *    or a Docker schema 1 manifest's `fsLayers[].blobSum`;
 *  - `subject`: the manifest a referrer (signature, SBOM) is about (OCI image-spec v1.1 `subject`).
 *    A referrer is about its subject but does not need it to be served, so a `subject` row never
 *    keeps its subject cached and evicting the subject leaves the referrer alone; deleting an
 *    image takes its untagged referrers with it, and a pin keeps an image's referrers.
 *
 * Rows are written with the manifest, in the same transaction, from the stored bytes. Anything
 * that does not parse as such a document (foreign artifact types, non-JSON, digests other than
 * sha256) records nothing: it is still cached and served, it just holds on to nothing, so gc
 * treats blobs only it uses as unreferenced after the grace period.
 */
import { readManifest } from '../../registry/manifest.ts';
import type { Metadata } from './metadata.ts';

export type RefKind = 'manifest' | 'blob' | 'subject';

export interface ManifestReference {
  readonly digest: string;
  readonly kind: RefKind;
}

/** Reference kinds a parent needs in order to be served: following these down reaches an image's content. */
const NEEDED: readonly RefKind[] = ['manifest', 'blob'];

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

/** Queries over the `refs` table. Statements are prepared once. */
export class RefGraph {
  readonly #children;
  readonly #parents;

  constructor(metadata: Metadata) {
    this.#children = metadata.db.prepare<[string], { digest: string; kind: RefKind }>('SELECT child AS digest, kind FROM refs WHERE parent = ?');
    this.#parents = metadata.db.prepare<[string], { digest: string; kind: RefKind }>('SELECT parent AS digest, kind FROM refs WHERE child = ?');
  }

  /** What the cached manifest `parent` references (nothing when it is not cached). */
  children(parent: string): ManifestReference[] {
    return this.#children.all(parent);
  }

  /** Cached manifests referencing `child`, with how. */
  parents(child: string): ManifestReference[] {
    return this.#parents.all(child);
  }

  /**
   * Every cached manifest that needs `digest` to be served, directly or through indexes above
   * it (not referrers: they do not need their subject).
   */
  dependents(digest: string): Set<string> {
    const found = new Set<string>();
    const queue = [digest];
    for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
      for (const p of this.parents(next)) {
        if (!NEEDED.includes(p.kind) || found.has(p.digest)) continue;
        found.add(p.digest);
        queue.push(p.digest);
      }
    }
    return found;
  }

  /**
   * The roots and everything they need, recursively (index → manifests → config and layers),
   * plus, with `referrers`, the cached referrers of every manifest reached and what they need.
   * Digests are included whether or not they are cached yet.
   */
  closure(roots: Iterable<string>, { referrers = false }: { referrers?: boolean } = {}): Set<string> {
    const found = new Set<string>();
    const queue: string[] = [];
    const visit = (d: string) => {
      if (found.has(d)) return;
      found.add(d);
      queue.push(d);
    };
    for (const r of roots) visit(r);
    for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
      for (const c of this.children(next)) if (NEEDED.includes(c.kind)) visit(c.digest);
      if (referrers) for (const p of this.parents(next)) if (p.kind === 'subject') visit(p.digest);
    }
    return found;
  }
}
