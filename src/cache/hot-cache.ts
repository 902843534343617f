/**
 * @module cache/hot-cache
 * In-memory LRU, bounded in bytes, in front of SQLite for the requests that repeat most: manifests
 * by digest, tags within their TTL, and repository links. A manifest-by-tag hit costs no SQLite read.
 */
import { LRUCache } from 'lru-cache';

export interface HotManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly bytes: Buffer;
}

export interface HotTag {
  readonly digest: string;
  readonly mediaType: string;
  readonly fetchedAt: number;
  /**
   * Set after a revalidation found the upstream out: until then (epoch ms) the tag is served STALE
   * without asking again. Kept here only, so a restart retries at once.
   */
  readonly retryAt?: number;
}

type Entry = { kind: 'manifest'; value: HotManifest } | { kind: 'tag'; value: HotTag } | { kind: 'link' };

/** Bookkeeping bytes charged per entry on top of its payload. */
const ENTRY_OVERHEAD = 200;

export class HotCache {
  readonly #lru: LRUCache<string, Entry>;

  constructor({ maxSize }: { maxSize: number }) {
    this.#lru = new LRUCache<string, Entry>({
      maxSize: Math.max(maxSize, 1),
      sizeCalculation: (entry, key) => key.length + ENTRY_OVERHEAD + (entry.kind === 'manifest' ? entry.value.bytes.length : 0),
    });
  }

  getManifest(digest: string): HotManifest | undefined {
    const e = this.#lru.get(`m\0${digest}`);
    return e?.kind === 'manifest' ? e.value : undefined;
  }

  setManifest(manifest: HotManifest): void {
    this.#lru.set(`m\0${manifest.digest}`, { kind: 'manifest', value: manifest });
  }

  /** Forgets a manifest removed from SQLite (eviction, deletion), so it is not served from memory. */
  deleteManifest(digest: string): void {
    this.#lru.delete(`m\0${digest}`);
  }

  getTag(upstream: string, repo: string, tag: string): HotTag | undefined {
    const e = this.#lru.get(`t\0${upstream}\0${repo}\0${tag}`);
    return e?.kind === 'tag' ? e.value : undefined;
  }

  setTag(upstream: string, repo: string, tag: string, value: HotTag): void {
    this.#lru.set(`t\0${upstream}\0${repo}\0${tag}`, { kind: 'tag', value });
  }

  deleteTag(upstream: string, repo: string, tag: string): void {
    this.#lru.delete(`t\0${upstream}\0${repo}\0${tag}`);
  }

  hasLink(upstream: string, repo: string, digest: string): boolean {
    return this.#lru.has(`l\0${upstream}\0${repo}\0${digest}`);
  }

  setLink(upstream: string, repo: string, digest: string): void {
    this.#lru.set(`l\0${upstream}\0${repo}\0${digest}`, { kind: 'link' });
  }

  deleteLink(upstream: string, repo: string, digest: string): void {
    this.#lru.delete(`l\0${upstream}\0${repo}\0${digest}`);
  }

  get bytes(): number {
    return this.#lru.calculatedSize;
  }
}
