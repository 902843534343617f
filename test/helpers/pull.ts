/**
 * @module test/helpers/pull
 * Pulling an image through a mirror the way containerd does — the tag, the platform manifests by
 * digest, every config and layer — with every byte checked against the fixtures.
 */
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { MANIFEST_ACCEPT, type FixtureImage, type FixtureSet } from './images.ts';

export const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** One request with its whole body read. */
export async function get(url: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await fetch(url, { method, headers });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

export type Got = Awaited<ReturnType<typeof get>>;

/**
 * Pulls `image` (at `tag`, under an optional registry path `prefix`) from `mirrorUrl`. Any status,
 * digest, length or byte that differs from the fixture fails the test. Returns the responses.
 */
export async function pullImage(mirrorUrl: string, fixtures: FixtureSet, image: FixtureImage, opts: { tag?: string; prefix?: string } = {}): Promise<{ manifest: Got; blobs: Got[] }> {
  const tag = opts.tag ?? (image.tags[0] as string);
  const base = `${mirrorUrl}/v2/${opts.prefix ?? ''}${image.repo}`;
  const manifest = await get(`${base}/manifests/${tag}`, { accept: MANIFEST_ACCEPT });
  expect(manifest.res.status, `${image.repo}:${tag} ${manifest.body.toString().slice(0, 300)}`).toBe(200);
  expect(manifest.res.headers.get('docker-content-digest')).toBe(image.manifest.digest);
  expect(manifest.body.equals(image.manifest.bytes)).toBe(true);
  for (const child of image.manifest.children ?? []) {
    const c = await get(`${base}/manifests/${child.digest}`, { accept: child.mediaType });
    expect(c.res.status, `${image.repo} manifest ${child.digest}`).toBe(200);
    expect(c.body.equals(child.bytes)).toBe(true);
  }
  const blobs: Got[] = [];
  for (const desc of fixtures.allBlobs(image)) {
    const b = await get(`${base}/blobs/${desc.digest}`);
    expect(b.res.status, `${image.repo} blob ${desc.digest}`).toBe(200);
    expect(b.res.headers.get('content-length')).toBe(String(desc.size));
    expect(sha256(b.body)).toBe(desc.digest);
    blobs.push(b);
  }
  return { manifest, blobs };
}
