/**
 * @module test/unit/sync/sync-runner
 * The sync engine on a real data directory with an in-memory upstream: tag lists followed through
 * their Link pages, referrers copied along with an image (into the cache and a hosted repository)
 * where the upstream has the referrers API, and skipped where it has not.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.ts';
import { createHosted, type MirrorCore } from '../../../src/core.ts';
import { openStorage, type Storage } from '../../../src/cache/storage.ts';
import { BlobProxy } from '../../../src/proxy/blob-proxy.ts';
import { ListProxy } from '../../../src/proxy/list-proxy.ts';
import { ManifestProxy } from '../../../src/proxy/manifest-proxy.ts';
import { Prefetcher } from '../../../src/proxy/prefetch.ts';
import { Router } from '../../../src/proxy/router.ts';
import { parseSyncFile } from '../../../src/sync/sync-file.ts';
import { planSync } from '../../../src/sync/sync-plan.ts';
import type { SyncEvent } from '../../../src/sync/sync-report.ts';
import { listTags, runSync } from '../../../src/sync/sync-runner.ts';
import { silentLogger } from '../../../src/util/logger.ts';
import { SlabPool } from '../../../src/util/read-slabs.ts';
import { FakeUpstream } from '../proxy/fake-upstream.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const HOSTED = 'registry.internal';

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

async function coreWith(upstream: FakeUpstream): Promise<{ core: MirrorCore; storage: Storage }> {
  const root = await mkdtemp(path.join(tmpdir(), 'ocimirror-sync-unit-'));
  const storage = await openStorage({ path: root, hotCacheBytes: 1 << 20, log: silentLogger });
  const config = parseConfig({ storage: { path: root }, hosted: [{ name: HOSTED }] }, { env: {} });
  const manifests = new ManifestProxy({ metadata: storage.metadata, hot: storage.hot, log: silentLogger });
  const blobs = new BlobProxy({ blobs: storage.blobs, hot: storage.hot });
  const core = {
    config,
    storage,
    router: new Router([upstream], undefined, [HOSTED]),
    manifests,
    blobs,
    lists: new ListProxy({ metadata: storage.metadata }),
    prefetcher: new Prefetcher({ manifests, blobs }),
    hosted: createHosted(storage, silentLogger, () => 0, Date.now),
    slabs: new SlabPool(),
  } as unknown as MirrorCore;
  cleanup = async () => {
    await storage.blobs.settle(1_000);
    storage.close();
    await rm(root, { recursive: true, force: true });
  };
  return { core, storage };
}

/** An image `app:v1` (config and one layer) and a signature whose subject it is. */
function imageWithSignature(upstream: FakeUpstream): { image: string; signature: string } {
  const config = upstream.putBlob('app', Buffer.from('{"architecture":"amd64","os":"linux"}'));
  const layer = upstream.putBlob('app', Buffer.from('layer bytes'));
  const image = upstream.putManifest('app', {
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 37 },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer, size: 11 }],
  }, { tags: ['v1'] });
  const payload = upstream.putBlob('app', Buffer.from('signature payload'));
  const empty = upstream.putBlob('app', Buffer.from('{}'));
  const signature = upstream.putManifest('app', {
    schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/vnd.example.signature',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty, size: 2 },
    layers: [{ mediaType: 'application/octet-stream', digest: payload, size: 17 }],
    subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.bytes.length },
  });
  return { image: image.digest, signature: signature.digest };
}

describe('sync runner: tag lists', () => {
  it('follows the Link header through every page of a tag list', async () => {
    const upstream = new FakeUpstream('fake');
    upstream.fault((req) => {
      if (!req.path.endsWith('/tags/list')) return undefined;
      const last = req.query?.last;
      const page = last === undefined ? { tags: ['a', 'b'], link: '</v2/app/tags/list?last=b&n=1000>; rel="next"' } : last === 'b' ? { tags: ['c'], link: undefined } : { tags: [], link: undefined };
      return { status: 200, headers: { 'content-type': 'application/json', ...(page.link ? { link: page.link } : {}) }, body: Buffer.from(JSON.stringify({ name: 'app', tags: page.tags })) };
    });
    const { core } = await coreWith(upstream);
    expect(await listTags(core, upstream.route('app'))).toEqual(['a', 'b', 'c']);
    expect(upstream.log).toEqual(['GET app/tags/list', 'GET app/tags/list']);
  });
});

describe('sync runner: referrers', () => {
  it('copies the referrers of an image into the cache and links them into the hosted repository', async () => {
    const upstream = new FakeUpstream('fake');
    const { image, signature } = imageWithSignature(upstream);
    upstream.fault((req) => {
      if (req.path !== `app/referrers/${image}`) return req.path.includes('/referrers/') ? { status: 200, headers: { 'content-type': OCI_INDEX }, body: Buffer.from('{"schemaVersion":2,"manifests":[]}') } : undefined;
      const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: signature, size: 1, artifactType: 'application/vnd.example.signature' }] };
      return { status: 200, headers: { 'content-type': OCI_INDEX }, body: Buffer.from(JSON.stringify(index)) };
    });
    const { core, storage } = await coreWith(upstream);
    const plan = planSync(parseSyncFile({ 'fake.example': { images: { app: ['v1'] }, referrers: true } }));
    const report = await runSync(core, plan, { dest: { kind: 'hosted', registry: HOSTED, prefix: 'mirrored' } });
    expect(report.images).toEqual([expect.objectContaining({ source: 'fake.example/app:v1', destination: `${HOSTED}/mirrored/app:v1`, result: 'ok', digest: image, referrers: 1, blobsFetched: 4 })]);
    expect(storage.metadata.getManifest(signature)).toBeDefined();
    const hosted = core.hosted.content;
    expect(hosted.getManifest(HOSTED, 'mirrored/app', signature).digest).toBe(signature);
    expect(hosted.referrers(HOSTED, 'mirrored/app', image).index.manifests.map((m) => m.digest)).toEqual([signature]);
  });

  it('skips referrers, saying so once, when the upstream has no referrers API', async () => {
    const upstream = new FakeUpstream('fake');
    const { image } = imageWithSignature(upstream);
    upstream.putManifest('app', { schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'x', digest: upstream.putBlob('app', Buffer.from('c2')), size: 2 }, layers: [] }, { tags: ['v2'] });
    const { core } = await coreWith(upstream);
    const events: SyncEvent[] = [];
    const plan = planSync(parseSyncFile({ 'fake.example': { images: { app: ['v1', 'v2'] }, referrers: true } }));
    const report = await runSync(core, plan, { dest: { kind: 'cache' }, onEvent: (e) => events.push(e) });
    expect(report.images.map((i) => [i.result, i.referrers])).toEqual([['ok', 0], ['ok', 0]]);
    expect(report.images[0]?.digest).toBe(image);
    expect(events.filter((e) => e.event === 'note')).toEqual([expect.objectContaining({ message: expect.stringContaining('has no referrers API') })]);
    expect(upstream.log.filter((l) => l.includes('/referrers/'))).toHaveLength(1);
  });
});

describe('sync runner: rate limits', () => {
  it('waits while the upstream budget is under rateLimitFloor, saying until when, before asking the upstream', async () => {
    const upstream = new FakeUpstream('fake');
    imageWithSignature(upstream);
    const T = 1_700_000_000_000;
    let pausedChecks = 2;
    Object.assign(upstream, { backgroundPausedUntil: () => (pausedChecks-- > 0 ? T + 30_000 : undefined) });
    const { core } = await coreWith(upstream);
    const events: SyncEvent[] = [];
    const waits: number[] = [];
    const plan = planSync(parseSyncFile({ 'fake.example': { images: { app: ['v1'] } } }));
    const report = await runSync(core, plan, {
      dest: { kind: 'cache' },
      now: () => T,
      onEvent: (e) => events.push(e),
      wait: async (ms) => {
        waits.push(ms);
        expect(upstream.requests).toHaveLength(0);
      },
    });
    expect(report.images.map((i) => i.result)).toEqual(['ok']);
    expect(waits).toEqual([30_000, 30_000]);
    expect(events.filter((e) => e.event === 'paused')).toEqual([
      expect.objectContaining({ upstream: 'fake', until: new Date(T + 30_000).toISOString() }),
      expect.objectContaining({ upstream: 'fake' }),
    ]);
  });
});
