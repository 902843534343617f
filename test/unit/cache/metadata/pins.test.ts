/**
 * @module test/unit/cache/pins
 * Pins from the config and from the admin API (the `pins` table): normalised, listed, removed,
 * surviving a reopen; and the closure of digests they protect, through a tag's cached digest or
 * a digest directly, down an index to every config and layer, and out to referrers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Metadata } from '../../../../src/cache/metadata/metadata.ts';
import { Pins, type PinResolver } from '../../../../src/cache/metadata/pins.ts';
import { openCacheFixture, type CacheFixture } from '../cache-fixture.ts';

/** What the mirror's Router does for a mirror serving docker.io as upstream 'hub' only. */
const resolve: PinResolver = (ref) => {
  if (ref.registry !== 'docker.io') throw new Error(`registry '${ref.registry}' is not configured on this mirror`);
  return { upstream: 'hub', repo: ref.repo };
};

let fx: CacheFixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

describe('Pins: the list', () => {
  it('stores admin pins normalised and lists config pins first', async () => {
    fx = await openCacheFixture();
    const pins = new Pins({ metadata: fx.metadata, config: ['alpine:3.19'] });
    expect(pins.add('busybox')).toBe('docker.io/library/busybox:latest');
    expect(pins.add('ghcr.io/org/app@sha256:' + 'a'.repeat(64))).toBe(`ghcr.io/org/app@sha256:${'a'.repeat(64)}`);
    pins.add('docker.io/library/alpine:3.19'); // already a config pin: listed once
    expect(pins.list()).toEqual([
      { ref: 'docker.io/library/alpine:3.19', source: 'config', createdAt: undefined },
      { ref: 'docker.io/library/busybox:latest', source: 'admin', createdAt: fx.now() },
      { ref: `ghcr.io/org/app@sha256:${'a'.repeat(64)}`, source: 'admin', createdAt: fx.now() },
    ]);
  });

  it('removes admin pins by any spelling, and says so only when there was one', async () => {
    fx = await openCacheFixture();
    const pins = new Pins({ metadata: fx.metadata, config: ['alpine'] });
    pins.add('docker.io/library/busybox:latest');
    expect(pins.remove('busybox')).toBe(true);
    expect(pins.remove('busybox')).toBe(false);
    expect(pins.remove('alpine')).toBe(false);
    expect(pins.list().map((p) => p.ref)).toEqual(['docker.io/library/alpine:latest']);
  });

  it('keeps admin pins across a restart', async () => {
    fx = await openCacheFixture();
    new Pins({ metadata: fx.metadata }).add('busybox:1.36');
    fx.metadata.close();
    const again = new Metadata(fx.paths.database, { flushIntervalMs: 3_600_000 });
    try {
      expect(new Pins({ metadata: again }).list().map((p) => p.ref)).toEqual(['docker.io/library/busybox:1.36']);
    } finally {
      again.close();
    }
  });

  it('refuses malformed references from the API and names the bad config entry', async () => {
    fx = await openCacheFixture();
    const pins = new Pins({ metadata: fx.metadata });
    expect(() => pins.add('Bad Name!')).toThrow();
    expect(() => pins.add('alpine:*')).toThrow();
    expect(() => pins.add('alpine@sha256:123')).toThrow();
    expect(() => new Pins({ metadata: fx!.metadata, config: ['alpine', 'nope:'] })).toThrow(/pin\[1\].*'nope:'/);
  });
});

describe('Pins: what they protect', () => {
  it('follows a tag pin to its cached digest and down an index to every config and layer', async () => {
    fx = await openCacheFixture();
    const [c, l1, l2, other] = [await fx.blob('c'), await fx.blob('l1'), await fx.blob('l2'), await fx.blob('other')];
    const amd = fx.image({ config: c, layers: [l1] });
    const arm = fx.image({ config: c, layers: [l2] });
    const index = fx.index([amd, arm], { upstream: 'hub', repo: 'library/alpine', tag: '3.19' });
    fx.image({ config: c, layers: [other], repo: 'library/alpine', tag: 'edge' });
    const pins = new Pins({ metadata: fx.metadata, config: ['alpine:3.19'] });
    expect(pins.roots(resolve)).toEqual([{ ref: 'docker.io/library/alpine:3.19', digest: index }]);
    expect(pins.pinnedDigests(resolve)).toEqual(new Set([index, amd, arm, c, l1, l2]));
  });

  it('follows the tag when it moves', async () => {
    fx = await openCacheFixture();
    const [c, l1, l2] = [await fx.blob('c'), await fx.blob('l1'), await fx.blob('l2')];
    const v1 = fx.image({ config: c, layers: [l1], repo: 'library/alpine', tag: 'latest' });
    const pins = new Pins({ metadata: fx.metadata, config: ['alpine'] });
    expect(pins.pinnedDigests(resolve).has(l1)).toBe(true);
    const v2 = fx.image({ config: c, layers: [l2], repo: 'library/alpine', tag: 'latest' });
    const pinned = pins.pinnedDigests(resolve);
    expect(pinned.has(v2) && pinned.has(l2)).toBe(true);
    expect(pinned.has(v1) || pinned.has(l1)).toBe(false);
  });

  it('pins a digest directly, whatever repository or registry it was named with', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    const image = fx.image({ config: c, layers: [l] });
    const pins = new Pins({ metadata: fx.metadata });
    pins.add(`ghcr.io/org/app:v1@${image}`);
    expect(pins.pinnedDigests(resolve)).toEqual(new Set([image, c, l]));
  });

  it("keeps an image's signatures with it", async () => {
    fx = await openCacheFixture();
    const [c, l, sigLayer] = [await fx.blob('c'), await fx.blob('l'), await fx.blob('sig')];
    const image = fx.image({ config: c, layers: [l], repo: 'library/app', tag: 'v1' });
    const sig = fx.image({ config: c, layers: [sigLayer], subject: image });
    const pins = new Pins({ metadata: fx.metadata, config: ['app:v1'] });
    expect(pins.pinnedDigests(resolve)).toEqual(new Set([image, c, l, sig, sigLayer]));
  });

  it('protects nothing for a tag not cached yet or a registry the mirror does not serve', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    fx.image({ config: c, layers: [l], upstream: 'hub', repo: 'org/app', tag: 'v1' });
    const pins = new Pins({ metadata: fx.metadata, config: ['alpine:3.19', 'quay.io/org/app:v1'] });
    expect(pins.roots(resolve).map((r) => r.digest)).toEqual([undefined, undefined]);
    expect(pins.pinnedDigests(resolve).size).toBe(0);
  });
});
