/**
 * @module test/integration/s3-backend
 * storage.backend s3 against a real S3-compatible store (Swift with s3api) and the real upstream:
 * fills from the upstream are copied into the bucket as they run, each object verified before it
 * appears; a replica with an empty disk is served from the bucket with no upstream blob request and
 * rebuilds its index from a listing; the disk tier stays LRU-bounded under storage.localCache.maxSize
 * and the bucket under storage.maxSize (least recently read first);
 * with the bucket unreachable (a TCP relay cut between mirror and store) the disk tier still serves,
 * fills fail with 503, and fills work again once it is back.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { missingS3Packages } from '../helpers/s3-server.ts';
import { startRelayedBucket, type RelayedBucket } from '../helpers/relayed-bucket.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { skopeoCopy } from '../helpers/skopeo.ts';
import { TestClock } from '../helpers/clock.ts';
import { describeIf, hasTool } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { waitFor } from '../helpers/wait.ts';
import type { RawConfig } from '../../src/config/schema.ts';

const missing = [...missingS3Packages(), ...['docker-registry', 'skopeo'].filter((t) => !hasTool(t))];
const PREFIX = 'mirror/';
const ADMIN_TOKEN = 's3-backend-admin-token-0123456789';
const KiB = 1024;
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describeIf(missing.length === 0, `missing: ${missing.join(' ')}`, 'blobs in an S3-compatible bucket behind each replica\'s disk', () => {
  let bucket: RelayedBucket;
  let upstream: Upstream;
  const mirrors: TestMirror[] = [];
  let work: string;

  beforeAll(async () => {
    [bucket, upstream] = await Promise.all([startRelayedBucket(), startUpstream()]);
    work = await mkdtemp(path.join(tmpdir(), 'ocimirror-s3-backend-'));
  }, 90_000);

  afterAll(async () => {
    for (const m of mirrors) await m.stop();
    await Promise.all([bucket?.stop(), upstream?.stop()]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  const config = (storage: Record<string, unknown> = {}): RawConfig => mirrorConfig(upstream.url, { storage: bucket.storage(PREFIX, storage) } as Partial<RawConfig>);

  async function startReplica(storage?: Record<string, unknown>, clock?: TestClock): Promise<TestMirror> {
    const m = await startTestMirror({ ...config(storage), admin: { token: ADMIN_TOKEN } } as RawConfig, { env: bucket.env, ...(clock && { clock }) });
    mirrors.push(m);
    return m;
  }

  const bucketContent = () => bucket.blobs(PREFIX);

  const metric = async (m: TestMirror, series: string) => {
    const line = (await (await fetch(`${m.url}/metrics`)).text()).split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };

  const blobGets = (digests: string[]) => digests.reduce((n, d) => n + upstream.proxy.count({ method: 'GET', pathIncludes: d }), 0);

  it('copies every blob of a pulled image into the bucket under its digest, fetching each from the upstream once', async () => {
    const a = await startReplica();
    const image = upstream.fixtures.image('medium');
    const digests = upstream.fixtures.allBlobs(image).map((b) => b.digest);
    await skopeoCopy(`docker://${new URL(a.url).host}/medium:latest`, `oci:${path.join(work, 'a')}:latest`);
    await waitFor('the copies into the bucket', () => a.mirror.storage.bucket!.copying === 0 && a.mirror.storage.bucket!.totals().objects >= digests.length, 20_000);
    const content = await bucketContent();
    for (const d of digests) expect(content.get(d), d).toBe(d);
    expect(blobGets(digests)).toBe(digests.length);
    expect(await metric(a, 'ocimirror_bucket_copies_total{result="stored"}')).toBe(digests.length);
  });

  it('serves a replica with an empty disk from the bucket with no upstream blob request, its index rebuilt from a listing', async () => {
    const image = upstream.fixtures.image('medium');
    const digests = upstream.fixtures.allBlobs(image).map((b) => b.digest);
    const before = blobGets(digests);
    const b = await startReplica();
    await waitFor('the index rebuilt from the bucket', () => b.mirror.storage.bucket!.totals().objects >= digests.length, 20_000);
    await skopeoCopy(`docker://${new URL(b.url).host}/medium:latest`, `oci:${path.join(work, 'b')}:latest`);
    expect(blobGets(digests)).toBe(before);
    // A fill is counted once committed, just after its client got the last byte.
    const content = upstream.fixtures.allBlobs(image).reduce((n, x) => n + x.size, 0);
    await waitFor('the fills from the bucket counted', async () => (await metric(b, 'ocimirror_fill_bytes_total{source="bucket"}')) === content, 10_000);
    expect(await metric(b, 'ocimirror_fill_bytes_total{source="upstream"}')).toBe(0);
    // Now on its disk: a second read is a local hit.
    const layer = image.manifest.layers[0]!;
    const res = await fetch(`${b.url}/v2/medium/blobs/${layer.digest}`);
    expect(res.headers.get('x-cache')).toBe('HIT');
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(layer.digest);
  });

  it('keeps each manifest in the bucket by digest, and serves a platform manifest from it to a replica that cached the index', async () => {
    const index = upstream.fixtures.image('multi');
    const a = mirrors[0]!;
    const host = new URL(a.url).host;
    await skopeoCopy(`docker://${host}/multi:latest`, `oci:${path.join(work, 'multi-a')}:latest`, { all: true });
    const children = (index.manifest.children ?? []).map((m) => m.digest);
    await waitFor('the manifests in the bucket', async () => {
      const keys = await bucket.manifests(PREFIX);
      return [index.manifest.digest, ...children].every((d) => keys.has(d));
    }, 20_000);
    const b = mirrors[1]!;
    await skopeoCopy(`docker://${new URL(b.url).host}/multi:latest`, `oci:${path.join(work, 'multi-b')}:latest`, { all: true });
    for (const child of children) expect(upstream.proxy.count({ method: 'GET', pathIncludes: `/manifests/${child}` }), child).toBe(1);
  });

  it('keeps serving what its disk holds while the bucket is unreachable, fails fills with 503, and fills again once it is back', async () => {
    const a = mirrors[0]!;
    const cached = upstream.fixtures.image('medium').manifest.layers[1]!;
    const uncached = upstream.fixtures.image('large').manifest.layers[0]!;
    await bucket.relay.cut();
    try {
      const hit = await fetch(`${a.url}/v2/medium/blobs/${cached.digest}`);
      expect(hit.status).toBe(200);
      expect(sha256(Buffer.from(await hit.arrayBuffer()))).toBe(cached.digest);
      const miss = await fetch(`${a.url}/v2/large/blobs/${uncached.digest}`);
      expect(miss.status).toBe(503);
      expect(((await miss.json()) as { errors: { code: string; message: string }[] }).errors[0]).toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/object store/) });
      const ready = (await (await fetch(`${a.url}/readyz`)).json()) as { status: string; degraded?: string[] };
      expect(ready.status).toBe('ready');
      expect(ready.degraded?.join(' ')).toMatch(/object store unreachable/);
      expect(await metric(a, 'ocimirror_bucket_reachable')).toBe(0);
      expect(upstream.proxy.count({ method: 'GET', pathIncludes: uncached.digest })).toBe(0);
    } finally {
      await bucket.relay.restore();
    }
    const again = await fetch(`${a.url}/v2/large/blobs/${uncached.digest}`);
    expect(again.status).toBe(200);
    expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(uncached.digest);
    await waitFor('the large layer in the bucket', async () => (await bucketContent()).get(uncached.digest) === uncached.digest, 20_000);
    expect(await metric(a, 'ocimirror_bucket_reachable')).toBe(1);
  });
  it('keeps its disk tier under localCache.maxSize and the bucket under maxSize, evicting what no replica read lately', async () => {
    const clock = new TestClock();
    const c = await startReplica({ maxSize: '1MiB', lowWatermark: '50%', localCache: { maxSize: '300KiB' } }, clock);
    await waitFor('the index rebuilt from the bucket', () => c.mirror.storage.bucket!.totals().bytes > 1024 * KiB, 20_000);
    const layers = upstream.fixtures.image('medium').manifest.layers;
    const read = layers[0]!;
    const other = layers[2]!;
    const large = upstream.fixtures.image('large').manifest.layers[0]!;
    await skopeoCopy(`docker://${new URL(c.url).host}/medium:latest`, `oci:${path.join(work, 'c')}:latest`);
    // Past the bucket eviction's grace for fresh objects; the layer read now is the one read last.
    clock.advance(3_600_000);
    const diskTier = () => c.mirror.storage.metadata.usage.current()?.bytes ?? Infinity;
    for (const d of [other.digest, read.digest]) {
      // Each read after the last eviction settled: a hit racing an eviction may lose its access time.
      await waitFor('the disk tier back under 300 KiB', () => diskTier() <= 300 * KiB && c.mirror.background.store.depth() === 0, 20_000);
      const res = await fetch(`${c.url}/v2/medium/blobs/${d}`);
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(d);
      // Committed just after the client got its last byte.
      await waitFor('the layer on the disk tier', () => c.mirror.storage.blobs.lookup(d) !== undefined, 10_000);
      clock.advance(1000);
    }
    await waitFor('the disk tier back under 300 KiB', () => diskTier() <= 300 * KiB && c.mirror.background.store.depth() === 0, 20_000);
    expect(c.mirror.storage.blobs.lookup(read.digest)).toBeDefined();

    const job = (await (await fetch(`${c.url}/admin/v1/evict?scope=bucket`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { id: number };
    const done = await waitFor('the bucket eviction', async () => {
      const j = (await (await fetch(`${c.url}/admin/v1/jobs/${job.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { state: string; result: { deleted: number; freedBytes: number } };
      return j.state === 'done' || j.state === 'failed' ? j : undefined;
    }, 30_000);
    expect(done.state).toBe('done');
    const content = await bucketContent();
    expect(content.get(read.digest)).toBe(read.digest);
    expect(content.has(large.digest)).toBe(false);
    const sizes = upstream.fixtures.images.flatMap((i) => upstream.fixtures.allBlobs(i));
    const left = [...content.keys()].reduce((n, d) => n + (sizes.find((b) => b.digest === d)?.size ?? 0), 0);
    expect(left).toBeLessThanOrEqual(512 * KiB);
    for (const [d, actual] of content) expect(actual).toBe(d);
    expect(c.mirror.storage.bucket!.sizeOf(large.digest)).toBeUndefined();
    // A blob gone from the bucket and the disk is filled again from the upstream, not an error.
    const again = await fetch(`${c.url}/v2/large/blobs/${large.digest}`);
    expect(again.status).toBe(200);
    expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(large.digest);
  });
});
