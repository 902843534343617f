/**
 * @module test/integration/referrers-cache
 * The referrers API for cached upstream content: an upstream without the API (distribution 2.8)
 * answers 404, so the mirror answers from the manifests it cached for the repository whose
 * `subject` is the digest (with `artifactType` filtering); with none the 404 stands (clients then
 * use the tag schema); an offline upstream's cached referrers are still listed.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { MEDIA_TYPES } from '../helpers/images.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describeWithTools(['docker-registry'], 'referrers of cached upstream content', () => {
  let upstream: Upstream;
  let dataDir: string;
  let m: TestMirror;
  let subject: { digest: string; size: number };
  let referrer: Buffer;

  beforeAll(async () => {
    upstream = await startUpstream();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ocimirror-referrers-'));
    const image = upstream.fixtures.image('small:v1');
    subject = { digest: image.manifest.digest, size: image.manifest.size };
    // An SBOM-like artifact about small:v1, pushed to the upstream by digest (no referrers API there).
    referrer = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      artifactType: 'application/vnd.example.sbom',
      config: image.manifest.config,
      layers: [],
      subject: { mediaType: image.manifest.mediaType, digest: subject.digest, size: subject.size },
      annotations: { 'org.example.kind': 'sbom' },
    }));
    const put = await fetch(`${upstream.registry.url}/v2/small/manifests/${sha256(referrer)}`, { method: 'PUT', headers: { 'content-type': MEDIA_TYPES.ociManifest }, body: referrer });
    expect(put.status).toBe(201);
    m = await startTestMirror(mirrorConfig(upstream.url), { dataDir });
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps the upstream 404 while nothing about the digest is cached', async () => {
    const res = await fetch(`${m.url}/v2/small/referrers/${subject.digest}`);
    expect(res.status).toBe(404);
  });

  it('lists a cached referrer, filtered by artifactType, once it was pulled through the mirror', async () => {
    expect((await fetch(`${m.url}/v2/small/manifests/${sha256(referrer)}`, { headers: { accept: MEDIA_TYPES.ociManifest } })).status).toBe(200);
    const res = await fetch(`${m.url}/v2/small/referrers/${subject.digest}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(MEDIA_TYPES.ociIndex);
    const index = (await res.json()) as { manifests: Array<Record<string, unknown>> };
    expect(index.manifests).toEqual([{ mediaType: MEDIA_TYPES.ociManifest, digest: sha256(referrer), size: referrer.length, artifactType: 'application/vnd.example.sbom', annotations: { 'org.example.kind': 'sbom' } }]);
    const other = await fetch(`${m.url}/v2/small/referrers/${subject.digest}?artifactType=application/vnd.example.signature`);
    expect(other.headers.get('oci-filters-applied')).toBe('artifactType');
    expect(((await other.json()) as { manifests: unknown[] }).manifests).toEqual([]);
  });

  it('still lists it when the upstream is offline', async () => {
    await m.stop();
    m = await startTestMirror(mirrorConfig(upstream.url, { upstream: { offline: true } } as never), { dataDir });
    upstream.proxy.reset();
    const res = await fetch(`${m.url}/v2/small/referrers/${subject.digest}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { manifests: Array<{ digest: string }> }).manifests.map((d) => d.digest)).toEqual([sha256(referrer)]);
    expect(upstream.proxy.records).toEqual([]);
  });
});
