/**
 * @module test/integration/cluster-bucket
 * Three `ocimirror serve` replicas sharing one bucket on a real S3-compatible store (Swift's s3api),
 * behind a real HAProxy in mode tcp, as an on-premise site runs them. A cold `skopeo copy` of a set
 * of images through HAProxy fetches each blob from the upstream once and leaves it once in the
 * bucket, verified; with the bucket cut off (a TCP relay between replicas and store), what the
 * replicas' disks hold is still pulled through HAProxy, a blob none holds is a clean 503, and pulls
 * work again once the bucket is back. A second cluster behind HAProxy's PROXY protocol v2 still
 * fetches once cluster-wide and logs the clients' real addresses: replicas reach each other without
 * the header.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../helpers/cluster.ts';
import { runCommand } from '../helpers/containerd.ts';
import type { FixtureImage } from '../helpers/images.ts';
import { missingS3Packages } from '../helpers/s3-server.ts';
import { startRelayedBucket, type RelayedBucket } from '../helpers/relayed-bucket.ts';
import { skopeoCopy } from '../helpers/skopeo.ts';
import { describeIf, hasTool } from '../helpers/tools.ts';
import { waitFor } from '../helpers/wait.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const missing = [...missingS3Packages(), ...['docker-registry', 'haproxy', 'skopeo', 'curl'].filter((t) => !hasTool(t))];
const PREFIX = 'cluster/';
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describeIf(missing.length === 0, `missing: ${missing.join(' ')}`, 'replicas sharing a bucket behind HAProxy', () => {
  let bucket: RelayedBucket;
  let upstream: Upstream;
  let work: string;

  beforeAll(async () => {
    [bucket, upstream] = await Promise.all([startRelayedBucket(), startUpstream()]);
    work = await mkdtemp(path.join(tmpdir(), 'ocimirror-cluster-bucket-'));
  }, 90_000);

  afterAll(async () => {
    await Promise.all([bucket?.stop(), upstream?.stop()]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** The images a cold pull copies: single-platform images of several sizes and a multi-platform index. */
  const images = () => ['small:latest', 'medium', 'many', 'large', 'multi'].map((r) => upstream.fixtures.image(r));
  const blobsOf = (list: FixtureImage[]) => new Map(list.flatMap((i) => upstream.fixtures.allBlobs(i)).map((b) => [b.digest, b.size]));

  const bucketBlobs = () => bucket.blobs(PREFIX);

  describe('on the bucket', () => {
    let cluster: TestCluster | undefined;

    beforeAll(async () => {
      cluster = await startCluster(upstream.url, {
        name: 'cluster-bucket',
        env: bucket.env,
        replicaConfig: () => ({ storage: bucket.storage(PREFIX, { localCache: { maxSize: '1GiB' } }) }),
      });
    }, 90_000);

    afterAll(async () => {
      await cluster?.stop();
    });

    const copyAll = async (tag: string) => {
      for (const image of images()) {
        await mkdir(path.join(work, tag), { recursive: true });
        const ref = `${image.repo}:${image.tags[0]}`;
        await skopeoCopy(`docker://${cluster!.front}/${ref}`, `oci:${path.join(work, tag, image.repo)}:${image.tags[0]}`, { all: image.manifest.children !== undefined, retryTimes: 2 });
      }
    };

    it('copies a set of images cold through HAProxy with one upstream fetch per blob, each stored once in the bucket and verified', async () => {
      upstream.proxy.reset();
      await copyAll('cold');
      const blobs = blobsOf(images());
      const content = [...blobs.values()].reduce((a, b) => a + b, 0);
      expect(upstream.proxy.bytes({ method: 'GET', pathIncludes: '/blobs/' })).toBe(content);
      for (const digest of blobs.keys()) expect(upstream.proxy.count({ method: 'GET', pathIncludes: digest }), digest).toBe(1);
      // Copies into the bucket run beside the clients' streams: give the last ones a moment.
      let stored = new Map<string, string>();
      for (let i = 0; i < 100 && stored.size < blobs.size; i++) {
        stored = await bucketBlobs();
        if (stored.size < blobs.size) await new Promise((r) => setTimeout(r, 100));
      }
      expect([...stored.keys()].sort()).toEqual([...blobs.keys()].sort());
      for (const [digest, actual] of stored) expect(actual, digest).toBe(digest);
    });

    it('serves what the replicas hold while the bucket is cut off, answers 503 for a blob none holds, and recovers', async () => {
      const fresh = upstream.fixtures.image('library/alpine').manifest.children![0]!.layers[0]!;
      await bucket.relay.cut();
      try {
        upstream.proxy.reset();
        await copyAll('outage');
        expect(upstream.proxy.count({ method: 'GET', pathIncludes: '/blobs/' })).toBe(0);
        const r = await runCommand('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `http://${cluster!.front}/v2/library/alpine/blobs/${fresh.digest}`]);
        expect(r.stdout).toBe('503');
        expect(upstream.proxy.count({ method: 'GET', pathIncludes: fresh.digest })).toBe(0);
      } finally {
        await bucket.relay.restore();
      }
      const again = await runCommand('curl', ['-sS', '--fail', `http://${cluster!.front}/v2/library/alpine/blobs/${fresh.digest}`]);
      expect(again.code, again.stderr).toBe(0);
      expect(sha256(again.stdoutBuf)).toBe(fresh.digest);
      let stored = new Map<string, string>();
      for (let i = 0; i < 100 && !stored.has(fresh.digest); i++) {
        stored = await bucketBlobs();
        if (!stored.has(fresh.digest)) await new Promise((r) => setTimeout(r, 100));
      }
      expect(stored.get(fresh.digest)).toBe(fresh.digest);
    });
  });

  describe('behind HAProxy sending PROXY protocol v2', () => {
    let cluster: TestCluster | undefined;

    beforeAll(async () => {
      cluster = await startCluster(upstream.url, {
        name: 'cluster-proxy-protocol',
        serverOptions: 'send-proxy-v2 check-send-proxy',
        replicaConfig: () => ({ server: { proxyProtocol: { trustedCidrs: ['127.0.0.1/32'] } } }),
      });
    }, 90_000);

    afterAll(async () => {
      await cluster?.stop();
    });

    it('fetches a blob asked through every replica from the upstream once, and logs the real client address', async () => {
      const layer = upstream.fixtures.image('many').manifest.layers[3]!;
      upstream.proxy.reset();
      for (let i = 0; i < 6; i++) {
        const r = await runCommand('curl', ['-sS', '--fail', '--interface', '127.0.0.2', `http://${cluster!.front}/v2/many/blobs/${layer.digest}`]);
        expect(r.code, r.stderr).toBe(0);
        expect(sha256(r.stdoutBuf)).toBe(layer.digest);
      }
      expect(upstream.proxy.count({ method: 'GET', pathIncludes: layer.digest })).toBe(1);
      const access = () =>
        cluster!.replicas
          .flatMap((r) => r.output().split('\n'))
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as { path?: string; client?: string })
          .filter((l) => l.path === `/v2/many/blobs/${layer.digest}`);
      const lines = await waitFor('the access lines', () => (access().length >= 6 ? access() : undefined), 10_000);
      expect(lines.map((a) => a.client)).toEqual(lines.map(() => '127.0.0.2'));
    });
  });
});
