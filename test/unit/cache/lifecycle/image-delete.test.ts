/**
 * @module test/unit/cache/image-delete
 * Deleting a cached image by tag or digest removes the tag(s), the manifests nothing else needs
 * and exactly the blobs no other cached manifest references; pinned content stays and is
 * reported; a blob being read is removed while its reader finishes from the open file.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ImageDeleter } from '../../../../src/cache/lifecycle/image-delete.ts';
import { Pins } from '../../../../src/cache/metadata/pins.ts';
import { UsageMeter } from '../../../../src/cache/metadata/usage.ts';
import { OCI_MANIFEST, openCacheFixture, readBody, type CacheFixture } from '../cache-fixture.ts';

let fx: CacheFixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

function deleter(f: CacheFixture, pinned?: () => ReadonlySet<string>): ImageDeleter {
  return new ImageDeleter({ metadata: f.metadata, blobs: f.blobs, hot: f.hot, log: f.log, pinned });
}

const present = (f: CacheFixture, digest: string) => f.metadata.getBlob(digest) !== undefined && f.fileExists(digest);

describe('ImageDeleter: by tag', () => {
  it('removes an image and its own layers but keeps a base layer another image shares', async () => {
    fx = await openCacheFixture();
    const base = await fx.blob('base', 1000);
    const [cfgA, appA] = [await fx.blob('cfgA', 10), await fx.blob('appA', 200)];
    const [cfgB, appB] = [await fx.blob('cfgB', 10), await fx.blob('appB', 300)];
    const a = fx.image({ config: cfgA, layers: [base, appA], repo: 'org/a', tag: 'v1' });
    const b = fx.image({ config: cfgB, layers: [base, appB], repo: 'org/b', tag: 'v1' });
    fx.hot.setManifest({ digest: a, mediaType: OCI_MANIFEST, bytes: fx.metadata.getManifest(a)!.bytes });
    fx.hot.setTag('hub', 'org/a', 'v1', { digest: a, mediaType: OCI_MANIFEST, fetchedAt: 0 });

    const report = await deleter(fx).deleteImage({ upstream: 'hub', repo: 'org/a', reference: 'v1' });
    expect(report).toEqual({ found: true, tagsRemoved: 1, manifestsRemoved: 1, blobsRemoved: 2, bytesFreed: 210, pinned: [] });
    expect(fx.metadata.getManifest(a)).toBeUndefined();
    expect(fx.metadata.getTag('hub', 'org/a', 'v1')).toBeUndefined();
    expect(present(fx, cfgA) || present(fx, appA)).toBe(false);
    expect(fx.hot.getManifest(a)).toBeUndefined();
    expect(fx.hot.getTag('hub', 'org/a', 'v1')).toBeUndefined();
    // Image b is whole.
    expect(fx.metadata.getTag('hub', 'org/b', 'v1')?.digest).toBe(b);
    expect([base, cfgB, appB].every((d) => present(fx!, d))).toBe(true);
    expect(new UsageMeter(fx.metadata).recount()).toMatchObject({ drifted: false, usage: { bytes: 1310, blobs: 3, manifests: 1 } });
  });

  it('keeps a manifest another tag still points at, and so all of its blobs', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    const image = fx.image({ config: c, layers: [l], repo: 'org/a', tag: 'v1' });
    fx.metadata.putManifest({ digest: image, mediaType: OCI_MANIFEST, bytes: fx.metadata.getManifest(image)!.bytes }, { upstream: 'hub', repo: 'org/a' }, 'latest');
    const report = await deleter(fx).deleteImage({ upstream: 'hub', repo: 'org/a', reference: 'v1' });
    expect(report).toMatchObject({ found: true, tagsRemoved: 1, manifestsRemoved: 0, blobsRemoved: 0 });
    expect(fx.metadata.getManifest(image)).toBeDefined();
    expect(present(fx, c) && present(fx, l)).toBe(true);
  });

  it('removes an index, its platform manifests and their layers, except a platform another index uses', async () => {
    fx = await openCacheFixture();
    const [c, l1, l2, l3] = [await fx.blob('c'), await fx.blob('l1'), await fx.blob('l2'), await fx.blob('l3')];
    const amd = fx.image({ config: c, layers: [l1] });
    const arm = fx.image({ config: c, layers: [l2] });
    const riscv = fx.image({ config: c, layers: [l3] });
    const index = fx.index([amd, arm, riscv], { repo: 'org/app', tag: '1.0' });
    const other = fx.index([riscv], { repo: 'org/app', tag: 'riscv' });
    const report = await deleter(fx).deleteImage({ upstream: 'hub', repo: 'org/app', reference: '1.0' });
    expect(report).toMatchObject({ tagsRemoved: 1, manifestsRemoved: 3, blobsRemoved: 2, bytesFreed: 200 });
    for (const m of [index, amd, arm]) expect(fx.metadata.getManifest(m)).toBeUndefined();
    expect(fx.metadata.getManifest(riscv)).toBeDefined();
    expect(fx.metadata.getManifest(other)).toBeDefined();
    expect([c, l3].every((d) => present(fx!, d))).toBe(true);
    expect(present(fx, l1) || present(fx, l2)).toBe(false);
  });

  it('takes untagged referrers with their subject but leaves tagged ones', async () => {
    fx = await openCacheFixture();
    const [c, l, s1, s2] = [await fx.blob('c'), await fx.blob('l'), await fx.blob('s1'), await fx.blob('s2')];
    const image = fx.image({ config: c, layers: [l], repo: 'org/a', tag: 'v1' });
    const untagged = fx.image({ config: c, layers: [s1], subject: image });
    const tagged = fx.image({ config: c, layers: [s2], subject: image, repo: 'org/a', tag: `sha256-${image.slice(7)}.sig` });
    const report = await deleter(fx).deleteImage({ upstream: 'hub', repo: 'org/a', reference: 'v1' });
    expect(report).toMatchObject({ manifestsRemoved: 2, blobsRemoved: 2 });
    expect(fx.metadata.getManifest(untagged)).toBeUndefined();
    expect(fx.metadata.getManifest(tagged)).toBeDefined();
    expect(present(fx, l) || present(fx, s1)).toBe(false);
    expect(present(fx, c) && present(fx, s2)).toBe(true);
  });

  it('reports a tag it does not hold as not found and changes nothing', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    fx.image({ config: c, layers: [l], repo: 'org/a', tag: 'v1' });
    expect(await deleter(fx).deleteImage({ upstream: 'hub', repo: 'org/a', reference: 'v2' })).toEqual({
      found: false, tagsRemoved: 0, manifestsRemoved: 0, blobsRemoved: 0, bytesFreed: 0, pinned: [],
    });
    expect(await deleter(fx).deleteImage({ upstream: 'ghcr', repo: 'org/a', reference: 'v1' })).toMatchObject({ found: false });
    expect(new UsageMeter(fx.metadata).current()).toMatchObject({ blobs: 2, manifests: 1 });
  });
});

describe('ImageDeleter: by digest', () => {
  it("removes every tag of the repository pointing at the digest, and the image with them", async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    const image = fx.image({ config: c, layers: [l], repo: 'org/a', tag: 'v1' });
    const bytes = fx.metadata.getManifest(image)!.bytes;
    fx.metadata.putManifest({ digest: image, mediaType: OCI_MANIFEST, bytes }, { upstream: 'hub', repo: 'org/a' }, 'latest');
    const report = await deleter(fx).deleteImage({ upstream: 'hub', repo: 'org/a', reference: image });
    expect(report).toMatchObject({ found: true, tagsRemoved: 2, manifestsRemoved: 1, blobsRemoved: 2 });
    expect(fx.metadata.cachedTags('hub', 'org/a')).toEqual([]);
  });

  it('keeps an image another repository still tags', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    const image = fx.image({ config: c, layers: [l], repo: 'org/a', tag: 'v1' });
    fx.metadata.putManifest({ digest: image, mediaType: OCI_MANIFEST, bytes: fx.metadata.getManifest(image)!.bytes }, { upstream: 'hub', repo: 'mirror/a' }, 'v1');
    const report = await deleter(fx).deleteImage({ upstream: 'hub', repo: 'org/a', reference: image });
    expect(report).toMatchObject({ tagsRemoved: 1, manifestsRemoved: 0, blobsRemoved: 0 });
    expect(fx.metadata.getTag('hub', 'mirror/a', 'v1')?.digest).toBe(image);
  });

  it('removes an untagged image pulled by digest', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    const image = fx.image({ config: c, layers: [l], repo: 'org/a' });
    expect(await deleter(fx).deleteImage({ upstream: 'hub', repo: 'org/a', reference: image })).toMatchObject({
      found: true, tagsRemoved: 0, manifestsRemoved: 1, blobsRemoved: 2, bytesFreed: 200,
    });
  });

  it('keeps a platform manifest a remaining index needs, removing only its tags', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    const amd = fx.image({ config: c, layers: [l], repo: 'org/a', tag: 'amd64' });
    fx.index([amd], { repo: 'org/a', tag: 'latest' });
    const report = await deleter(fx).deleteImage({ upstream: 'hub', repo: 'org/a', reference: amd });
    expect(report).toMatchObject({ tagsRemoved: 1, manifestsRemoved: 0, blobsRemoved: 0 });
    expect(fx.metadata.getManifest(amd)).toBeDefined();
  });
});

describe('ImageDeleter: pins and readers', () => {
  it('keeps a pinned image whole, its tag included, and reports it', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    const image = fx.image({ config: c, layers: [l], repo: 'library/alpine', tag: '3.19' });
    const pins = new Pins({ metadata: fx.metadata, config: ['alpine:3.19'] });
    const pinned = () => pins.pinnedDigests(() => ({ upstream: 'hub', repo: 'library/alpine' }));
    const report = await deleter(fx, pinned).deleteImage({ upstream: 'hub', repo: 'library/alpine', reference: '3.19' });
    expect(report).toEqual({ found: true, tagsRemoved: 0, manifestsRemoved: 0, blobsRemoved: 0, bytesFreed: 0, pinned: [image] });
    expect(fx.metadata.getTag('hub', 'library/alpine', '3.19')?.digest).toBe(image);
  });

  it('removes an image but keeps a layer a pin protects', async () => {
    fx = await openCacheFixture();
    const [c, shared, own] = [await fx.blob('c'), await fx.blob('shared'), await fx.blob('own')];
    const image = fx.image({ config: c, layers: [shared, own], repo: 'org/a', tag: 'v1' });
    const report = await deleter(fx, () => new Set([shared])).deleteImage({ upstream: 'hub', repo: 'org/a', reference: 'v1' });
    expect(report).toMatchObject({ manifestsRemoved: 1, blobsRemoved: 2, pinned: [shared] });
    expect(fx.metadata.getManifest(image)).toBeUndefined();
    expect(present(fx, shared)).toBe(true);
  });

  it('removes a blob being read while its reader finishes from the open file', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l', 64 * 1024)];
    fx.image({ config: c, layers: [l], repo: 'org/a', tag: 'v1' });
    const reading = await fx.blobs.openCommitted(fx.metadata.getBlob(l)!);
    expect(fx.blobs.inUse(l)).toBe(true);
    const report = await deleter(fx).deleteImage({ upstream: 'hub', repo: 'org/a', reference: 'v1' });
    expect(report.blobsRemoved).toBe(2);
    expect(fx.fileExists(l)).toBe(false);
    expect((await readBody(reading!.body)).length).toBe(64 * 1024);
  });
});
