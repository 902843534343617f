/**
 * @module cache/metadata/references
 * The `refs` table: what each cached manifest references (metadata/manifest-references gives the
 * kinds), so eviction, deletion, pins and gc can follow an image from its tag down to every blob
 * and back up from a blob to every manifest that needs it.
 *
 * A `subject` row (a referrer's link to what it is about) never keeps its subject cached, and
 * evicting the subject leaves the referrer alone: a referrer does not need its subject to be
 * served. Deleting an image takes its untagged referrers with it, and a pin keeps an image's
 * referrers. Rows are written with the manifest, in the same transaction (metadata.putManifest);
 * a manifest that records nothing holds on to nothing, so gc treats blobs only it uses as
 * unreferenced after the grace period.
 */
import type { Database, Statement } from 'better-sqlite3';
import type { ManifestReference, RefKind } from './manifest-references.ts';

/** Reference kinds a parent needs in order to be served: following these down reaches an image's content. */
const NEEDED: readonly RefKind[] = ['manifest', 'blob'];

export class RefGraph {
  readonly #insert: Statement<[string, string, RefKind]>;
  readonly #children: Statement<[string], ManifestReference>;
  readonly #parents: Statement<[string], ManifestReference>;
  readonly #deleteOf: Statement<[string]>;
  readonly #deleteOrphans: Statement<[]>;

  constructor(db: Database) {
    this.#insert = db.prepare('INSERT OR IGNORE INTO refs (parent, child, kind) VALUES (?, ?, ?)');
    this.#children = db.prepare('SELECT child AS digest, kind FROM refs WHERE parent = ?');
    this.#parents = db.prepare('SELECT parent AS digest, kind FROM refs WHERE child = ?');
    this.#deleteOf = db.prepare('DELETE FROM refs WHERE parent = ?');
    this.#deleteOrphans = db.prepare('DELETE FROM refs WHERE parent NOT IN (SELECT digest FROM manifests)');
  }

  /** Records what `parent` references (rows already there stay). */
  add(parent: string, references: Iterable<ManifestReference>): void {
    for (const r of references) this.#insert.run(parent, r.digest, r.kind);
  }

  /** Forgets what `parent` references (its manifest is being removed). */
  deleteOf(parent: string): void {
    this.#deleteOf.run(parent);
  }

  /** Deletes rows whose manifest is not cached; returns how many. */
  deleteOrphans(): number {
    return this.#deleteOrphans.run().changes;
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
