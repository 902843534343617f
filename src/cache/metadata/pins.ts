/**
 * @module cache/metadata/pins
 * Pinned images are never evicted and never removed by gc or image deletion. Pins come from the
 * config (`pin:`, fixed for the process) and from the admin API (the `pins` table, surviving
 * restarts). Both are image references as people write them (`docker.io/library/alpine:3.19`,
 * `ghcr.io/org/app@sha256:…`), stored normalised (registry/image-ref), so `alpine` and
 * `docker.io/library/alpine:latest` are the same pin.
 *
 * A pin protects a closure of digests: a tag pin follows the tag's cached digest (a tag not
 * cached yet pins nothing until it is pulled; a tag that moves upstream moves the pin with it),
 * a digest pin names its root directly; from a root, every manifest of an index, every config
 * and layer, and the image's cached referrers (signatures) are pinned too (metadata/references).
 * Admin pins are rows of the `pins` table (metadata/pin-queries). A pin on a registry this mirror
 * does not serve is refused where it is made (jobs/background: the admin API's 404, a config error).
 */
import { formatImageRef, parseImageRef, type ImageRef } from '../../registry/image-ref.ts';
import type { Metadata } from './metadata.ts';

/**
 * Maps a pin's registry and repository to the upstream name and repository the cache keys tags by.
 * The mirror's wiring uses its Router: `router.resolve(`${registry}/${repo}`)`. Undefined or a
 * throw (an admin pin kept from before its registry left the config) means the pin protects nothing.
 */
export type PinResolver = (ref: ImageRef) => { upstream: string; repo: string } | undefined;

export interface Pin {
  /** Normalised reference, e.g. docker.io/library/alpine:3.19. */
  readonly ref: string;
  /** Config pins cannot be removed through the API. */
  readonly source: 'config' | 'admin';
  /** When an admin pin was added (epoch ms). */
  readonly createdAt: number | undefined;
}

export interface PinRoot {
  readonly ref: string;
  /** The manifest digest the pin resolves to now; undefined when its tag is not cached (or unresolvable). */
  readonly digest: string | undefined;
}

export interface PinsOptions {
  metadata: Metadata;
  /** `pin:` from the config. */
  config?: readonly string[];
}

export class Pins {
  readonly #metadata: Metadata;
  readonly #config: readonly string[];

  constructor({ metadata, config = [] }: PinsOptions) {
    this.#metadata = metadata;
    this.#config = config.map((text, i) => {
      try {
        return normalise(text);
      } catch (cause) {
        throw new Error(`Expected pin[${i}] to be an image reference such as docker.io/library/alpine:3.19 or ghcr.io/org/app@sha256:<hex>, got '${text}'`, { cause });
      }
    });
  }

  /** Adds an admin pin; returns its normalised form. Throws a RegistryError for a malformed reference. */
  add(ref: string): string {
    const normal = normalise(ref);
    this.#metadata.pins.add(normal, this.#metadata.now());
    return normal;
  }

  /** Removes an admin pin; false when there was none (config pins are not removable here). */
  remove(ref: string): boolean {
    return this.#metadata.pins.remove(normalise(ref));
  }

  /** Config pins first, then admin pins not already pinned by the config. */
  list(): Pin[] {
    const config = new Set(this.#config);
    const pins: Pin[] = [...config].map((ref) => ({ ref, source: 'config', createdAt: undefined }));
    for (const row of this.#metadata.pins.all()) if (!config.has(row.ref)) pins.push({ ref: row.ref, source: 'admin', createdAt: row.createdAt });
    return pins;
  }

  /** Each pin with the manifest digest it protects right now. */
  roots(resolve: PinResolver): PinRoot[] {
    return this.list().map(({ ref }) => ({ ref, digest: this.#root(parseImageRef(ref), resolve) }));
  }

  /** Every digest (manifests, configs, layers, referrers) the pins protect right now. */
  pinnedDigests(resolve: PinResolver): Set<string> {
    const roots = this.roots(resolve).flatMap((r) => (r.digest === undefined ? [] : [r.digest]));
    return this.#metadata.refs.closure(roots, { referrers: true });
  }

  #root(ref: ImageRef, resolve: PinResolver): string | undefined {
    // name:tag@digest means the digest, as for docker pull.
    if (ref.digest !== undefined) return ref.digest;
    let target: { upstream: string; repo: string } | undefined;
    try {
      target = resolve(ref);
    } catch {
      return undefined;
    }
    if (target === undefined || ref.tag === undefined) return undefined;
    return this.#metadata.getTag(target.upstream, target.repo, ref.tag)?.digest;
  }
}

function normalise(text: string): string {
  return formatImageRef(parseImageRef(text));
}
