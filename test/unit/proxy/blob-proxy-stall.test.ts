/**
 * @module test/unit/proxy/blob-proxy-stall
 * A client waiting for a blob fill's upstream answer waits at most the upstream's `timeout`
 * (503), on a real cache against an in-memory upstream that holds its answers back; the fill is
 * detached from that client and goes on for the next one, which joins it instead of starting another.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobProxy } from '../../../src/proxy/blob-proxy.ts';
import { parseDigest } from '../../../src/registry/digest.ts';
import { rejection } from '../../helpers/thrown.ts';
import { waitFor } from '../../helpers/wait.ts';
import { openCacheFixture, type CacheFixture } from '../cache/cache-fixture.ts';
import { FakeUpstream } from './fake-upstream.ts';
import { setUpstreamTimeout } from './stalling-upstream.ts';

let fx: CacheFixture;
let upstream: FakeUpstream;
let blobs: BlobProxy;

beforeEach(async () => {
  fx = await openCacheFixture();
  upstream = new FakeUpstream('up');
  setUpstreamTimeout(upstream, 100);
  blobs = new BlobProxy({ blobs: fx.blobs, hot: fx.hot });
});
afterEach(async () => {
  await fx.close();
});

// Without the bound the first client would wait for as long as the upstream holds back; 5 s ends it instead.
describe('BlobProxy when the upstream is slow to answer a fill', { timeout: 5_000 }, () => {
  it('gives a client up after the timeout, and the fill goes on for the next client', async () => {
    const bytes = Buffer.from('layer bytes '.repeat(1000));
    const digest = parseDigest(upstream.putBlob('app', bytes));
    const open = upstream.hold();
    try {
      const err = await rejection(blobs.get(upstream.route('app'), digest, { method: 'GET', range: undefined }));
      expect(err.code).toBe('UNAVAILABLE');
      expect(err.message).toContain('timed out');
    } finally {
      open();
    }
    const res = await blobs.get(upstream.route('app'), digest, { method: 'GET', range: undefined });
    expect(res).toMatchObject({ cache: 'MISS', size: bytes.length });
    await res.body?.release();
    await waitFor('the fill to commit', () => fx.blobs.lookup(digest.value) !== undefined, 3_000);
    expect(upstream.log).toEqual([`GET app/blobs/${digest.value}`]);
  });
});
