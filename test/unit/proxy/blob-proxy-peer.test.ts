/**
 * @module test/unit/proxy/blob-proxy-peer
 * A blob proxy in a cluster: a miss reads from the peer source when it offers one (no upstream
 * request), from the upstream when it declines, and a request that came from a peer never asks
 * the peer source (no request loops). Bytes from a peer are verified like any other: wrong ones
 * are not committed, and neither is a blob whose peer stream is cut half way.
 */
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FillSource } from '../../../src/cache/blobs/blob-cache.ts';
import { BlobProxy, type PeerSource } from '../../../src/proxy/blob-proxy.ts';
import { parseDigest } from '../../../src/registry/digest.ts';
import { waitFor } from '../../helpers/wait.ts';
import { openCacheFixture, type CacheFixture } from '../cache/cache-fixture.ts';
import { FakeUpstream } from './fake-upstream.ts';

const REPO = 'library/app';
const BYTES = Buffer.from('a layer only the owner replica has fetched');

let fx: CacheFixture;
let upstream: FakeUpstream;
let asked: string[];

const fromBytes = (bytes: Buffer): FillSource => ({ size: bytes.length, mediaType: 'application/octet-stream', body: Readable.from([bytes]) });

function proxyWith(answer: () => FillSource | undefined): BlobProxy {
  const peerSource: PeerSource = async (route, digest) => {
    asked.push(`${route.upstream.name} ${route.repo} ${digest.value}`);
    return answer();
  };
  return new BlobProxy({ blobs: fx.blobs, hot: fx.hot, peerSource });
}

beforeEach(async () => {
  fx = await openCacheFixture();
  upstream = new FakeUpstream('hub');
  asked = [];
});
afterEach(async () => {
  await fx.blobs.settle(5_000);
  await fx.close();
});

describe('BlobProxy with a peer source', () => {
  it('fills a miss from the peer when it offers the blob, asking the upstream nothing', async () => {
    const digest = upstream.putBlob(REPO, BYTES);
    const proxy = proxyWith(() => fromBytes(BYTES));
    expect(await proxy.prefetch(upstream.route(REPO), parseDigest(digest))).toBe('fetched');
    expect(asked).toEqual([`hub ${REPO} ${digest}`]);
    expect(upstream.log.filter((r) => r.startsWith('GET'))).toEqual([]);
    expect(fx.blobs.lookup(digest)?.size).toBe(BYTES.length);
  });

  it('fills a miss from the upstream when the peer source declines', async () => {
    const digest = upstream.putBlob(REPO, BYTES);
    const proxy = proxyWith(() => undefined);
    expect(await proxy.prefetch(upstream.route(REPO), parseDigest(digest))).toBe('fetched');
    expect(asked).toHaveLength(1);
    expect(upstream.log).toEqual([`GET ${REPO}/blobs/${digest}`]);
  });

  it('never asks the peer source for a request that came from a peer', async () => {
    const digest = upstream.putBlob(REPO, BYTES);
    const proxy = proxyWith(() => fromBytes(BYTES));
    const res = await proxy.get(upstream.route(REPO), parseDigest(digest), { method: 'GET', range: undefined, fromPeer: true });
    await res.body?.release();
    await waitFor('the fill to commit', () => fx.blobs.lookup(digest) !== undefined, 5_000);
    expect(asked).toEqual([]);
    expect(upstream.log).toEqual([`GET ${REPO}/blobs/${digest}`]);
  });

  it('commits nothing when the peer sends bytes that do not match the digest', async () => {
    const digest = upstream.putBlob(REPO, BYTES);
    const wrong = Buffer.from(BYTES);
    wrong[0] = wrong[0]! ^ 1;
    const proxy = proxyWith(() => fromBytes(wrong));
    await expect(proxy.prefetch(upstream.route(REPO), parseDigest(digest))).rejects.toThrow();
    expect(fx.blobs.lookup(digest)).toBeUndefined();
  });

  it('continues a peer stream cut half way with the rest from the upstream, and commits the verified blob', async () => {
    const digest = upstream.putBlob(REPO, BYTES);
    const cut = new Readable({ read() {} });
    cut.push(BYTES.subarray(0, 10));
    setImmediate(() => cut.destroy(new Error('socket hang up')));
    const proxy = proxyWith(() => ({ size: BYTES.length, mediaType: undefined, body: cut }));
    expect(await proxy.prefetch(upstream.route(REPO), parseDigest(digest))).toBe('fetched');
    expect(fx.blobs.lookup(digest)?.size).toBe(BYTES.length);
    expect(upstream.requests.map((r) => [r.path, r.headers?.range])).toEqual([[`${REPO}/blobs/${digest}`, 'bytes=10-']]);
  });

  it('commits nothing when the peer stream is cut and the upstream cannot send the rest', async () => {
    const digest = upstream.putBlob(REPO, BYTES);
    upstream.fault(() => 'down');
    const cut = new Readable({ read() {} });
    cut.push(BYTES.subarray(0, 10));
    setImmediate(() => cut.destroy(new Error('socket hang up')));
    const proxy = proxyWith(() => ({ size: BYTES.length, mediaType: undefined, body: cut }));
    await expect(proxy.prefetch(upstream.route(REPO), parseDigest(digest))).rejects.toThrow(/unreachable/);
    expect(fx.blobs.lookup(digest)).toBeUndefined();
  });
});
