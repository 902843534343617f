/**
 * @module test/unit/cache/hot-cache
 * The in-memory LRU in front of SQLite: manifests, tags and repository links share one byte
 * budget (`hotCache.maxSize`); every entry costs its key, a fixed 200-byte overhead and, for a
 * manifest, its bytes. When the budget is exceeded the least recently used entries go first;
 * `0` turns the cache off.
 */
import { describe, expect, it } from 'vitest';
import { HotCache, type HotManifest } from '../../../src/cache/hot-cache.ts';

const OVERHEAD = 200;
const digestOf = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
const manifest = (n: number, size = 1000): HotManifest => ({ digest: digestOf(n), mediaType: 'application/vnd.oci.image.manifest.v1+json', bytes: Buffer.alloc(size, n) });
/** What one manifest entry is charged: key `m\0<digest>`, overhead and its bytes. */
const manifestCost = (size = 1000) => 2 + digestOf(0).length + OVERHEAD + size;

describe('HotCache', () => {
  it('returns what was stored, by kind', () => {
    const cache = new HotCache({ maxSize: 1 << 20 });
    const m = manifest(1);
    cache.setManifest(m);
    cache.setTag('hub', 'library/alpine', 'latest', { digest: m.digest, mediaType: m.mediaType, fetchedAt: 42 });
    cache.setLink('hub', 'library/alpine', m.digest);
    expect(cache.getManifest(m.digest)).toBe(m);
    expect(cache.getTag('hub', 'library/alpine', 'latest')).toEqual({ digest: m.digest, mediaType: m.mediaType, fetchedAt: 42 });
    expect(cache.hasLink('hub', 'library/alpine', m.digest)).toBe(true);
  });

  it('keeps tags and links apart per upstream, repository and tag', () => {
    const cache = new HotCache({ maxSize: 1 << 20 });
    const tag = { digest: digestOf(1), mediaType: 'x', fetchedAt: 1 };
    cache.setTag('hub', 'library/alpine', 'latest', tag);
    cache.setLink('hub', 'library/alpine', digestOf(1));
    expect(cache.getTag('ghcr', 'library/alpine', 'latest')).toBeUndefined();
    expect(cache.getTag('hub', 'library/alpine2', 'latest')).toBeUndefined();
    expect(cache.getTag('hub', 'library/alpine', 'edge')).toBeUndefined();
    expect(cache.hasLink('ghcr', 'library/alpine', digestOf(1))).toBe(false);
    expect(cache.hasLink('hub', 'library/alpine', digestOf(2))).toBe(false);
    // A tag named like a digest is still a tag, not a manifest or a link.
    expect(cache.getManifest(digestOf(1))).toBeUndefined();
  });

  it('forgets a deleted tag', () => {
    const cache = new HotCache({ maxSize: 1 << 20 });
    cache.setTag('hub', 'r', 't', { digest: digestOf(1), mediaType: 'x', fetchedAt: 1 });
    cache.deleteTag('hub', 'r', 't');
    expect(cache.getTag('hub', 'r', 't')).toBeUndefined();
  });

  it('charges each entry its key, a fixed overhead and its manifest bytes', () => {
    const cache = new HotCache({ maxSize: 1 << 20 });
    cache.setManifest(manifest(1, 1000));
    expect(cache.bytes).toBe(manifestCost(1000));
    cache.setLink('hub', 'r', digestOf(1));
    expect(cache.bytes).toBe(manifestCost(1000) + `l\0hub\0r\0${digestOf(1)}`.length + OVERHEAD);
  });

  it('evicts the least recently used manifest when the byte bound is exceeded', () => {
    const cache = new HotCache({ maxSize: manifestCost() * 3 });
    for (const n of [1, 2, 3]) cache.setManifest(manifest(n));
    expect(cache.getManifest(digestOf(1))).toBeDefined(); // 1 is now the most recently used
    cache.setManifest(manifest(4));
    expect(cache.getManifest(digestOf(2))).toBeUndefined();
    for (const n of [1, 3, 4]) expect(cache.getManifest(digestOf(n)), String(n)).toBeDefined();
    expect(cache.bytes).toBeLessThanOrEqual(manifestCost() * 3);
  });

  it('evicts as many old entries as a large newcomer needs', () => {
    const cache = new HotCache({ maxSize: manifestCost(1000) * 4 });
    for (const n of [1, 2, 3, 4]) cache.setManifest(manifest(n));
    cache.setManifest(manifest(5, 2500)); // needs the room of about three small ones
    expect([1, 2, 3].map((n) => cache.getManifest(digestOf(n)))).toEqual([undefined, undefined, undefined]);
    expect(cache.getManifest(digestOf(4))).toBeDefined();
    expect(cache.getManifest(digestOf(5))).toBeDefined();
  });

  it('lets tags and links push out manifests, since they share the budget', () => {
    const cache = new HotCache({ maxSize: manifestCost() + 100 }); // no room for a 208-byte tag beside it
    cache.setManifest(manifest(1));
    cache.setTag('hub', 'r', 't', { digest: digestOf(1), mediaType: 'x', fetchedAt: 1 });
    expect(cache.getManifest(digestOf(1))).toBeUndefined();
    expect(cache.getTag('hub', 'r', 't')).toBeDefined();
  });

  it('does not keep a manifest larger than the whole budget, and evicts nothing for it', () => {
    const cache = new HotCache({ maxSize: manifestCost() * 2 });
    cache.setManifest(manifest(1));
    cache.setManifest(manifest(2, 10_000));
    expect(cache.getManifest(digestOf(2))).toBeUndefined();
    expect(cache.getManifest(digestOf(1))).toBeDefined();
  });

  it('keeps nothing when maxSize is 0 (off)', () => {
    const cache = new HotCache({ maxSize: 0 });
    cache.setManifest(manifest(1, 1));
    cache.setTag('hub', 'r', 't', { digest: digestOf(1), mediaType: 'x', fetchedAt: 1 });
    cache.setLink('hub', 'r', digestOf(1));
    expect(cache.getManifest(digestOf(1))).toBeUndefined();
    expect(cache.getTag('hub', 'r', 't')).toBeUndefined();
    expect(cache.hasLink('hub', 'r', digestOf(1))).toBe(false);
    expect(cache.bytes).toBe(0);
  });

  it('replaces an entry stored again under the same key without charging it twice', () => {
    const cache = new HotCache({ maxSize: 1 << 20 });
    cache.setManifest(manifest(1, 1000));
    cache.setManifest(manifest(1, 500));
    expect(cache.getManifest(digestOf(1))?.bytes.length).toBe(500);
    expect(cache.bytes).toBe(manifestCost(500));
  });
});
