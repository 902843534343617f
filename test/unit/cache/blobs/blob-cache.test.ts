/**
 * Fills as the cache runs them (src/cache/blobs/blob-cache.ts), with an upstream body the test
 * writes to: one fill per digest however many ask, a failed start retried by the next request, a
 * fill whose disk filled up forgotten so new clients start their own, and committed blobs handed
 * out as open file ranges.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BlobCache, type FillRequest, type FillSource } from '../../../../src/cache/blobs/blob-cache.ts';
import { nodeFillWriter, type FillWriter } from '../../../../src/cache/blobs/fill-writer.ts';
import { silentLogger } from '../../../../src/util/logger.ts';
import { openCacheFixture, readBody, type CacheFixture } from '../cache-fixture.ts';
import { digestOf, diskFullWriter, readRange, waitWritten } from './fill-fixture.ts';

let fx: CacheFixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

function request(content: Buffer, open: (signal: AbortSignal) => Promise<FillSource>): FillRequest {
  return { digest: digestOf(content), link: { upstream: 'hub', repo: 'library/app' }, source: 'hub', timeoutMs: 60_000, open };
}

/** An upstream answer whose body the test writes. */
function answer(content: Buffer) {
  const body = new PassThrough();
  return { body, source: { size: content.length, mediaType: 'application/octet-stream', body } satisfies FillSource };
}

async function cacheWith(fillWriter?: () => FillWriter): Promise<{ fx: CacheFixture; cache: BlobCache }> {
  fx = await openCacheFixture();
  return { fx, cache: new BlobCache(fx.store, fx.metadata, silentLogger, fillWriter ? { fillWriter } : {}) };
}

describe('BlobCache fills', () => {
  it('runs one fill for concurrent requests of a digest, on a signal of its own, and commits it', async () => {
    const { fx, cache } = await cacheWith();
    const content = randomBytes(5000);
    const upstream = answer(content);
    const open = vi.fn(async (_signal: AbortSignal) => upstream.source);
    const req = request(content, open);
    const fills = await Promise.all([cache.fill(req), cache.fill(req), cache.fill(req)]);
    expect(open).toHaveBeenCalledTimes(1);
    expect(new Set(fills).size).toBe(1);
    const signal = open.mock.calls[0]![0];
    expect(signal.aborted).toBe(false);
    expect(await cache.inflight(req.digest.value)).toBe(fills[0]);
    expect(cache.inUse(req.digest.value)).toBe(true);

    upstream.body.end(content);
    expect(await cache.outcome(fills[0]!)).toBe(true);
    expect(fx.metadata.getBlob(req.digest.value)?.size).toBe(5000);
    expect(cache.inflight(req.digest.value)).toBeUndefined();
    expect(signal.aborted).toBe(false);
  });

  it('lets the next request start afresh when the upstream could not be opened', async () => {
    const { cache } = await cacheWith();
    const content = randomBytes(100);
    const upstream = answer(content);
    const open = vi.fn<(signal: AbortSignal) => Promise<FillSource>>().mockRejectedValueOnce(new Error('connection refused')).mockResolvedValueOnce(upstream.source);
    const req = request(content, open);
    await expect(cache.fill(req)).rejects.toThrow(/connection refused/);
    expect(cache.inflight(req.digest.value)).toBeUndefined();
    const fill = await cache.fill(req);
    expect(open).toHaveBeenCalledTimes(2);
    upstream.body.end(content);
    expect(await cache.outcome(fill)).toBe(true);
  });

  it('forgets a fill whose disk filled up, so a new client starts its own, and commits nothing from it', async () => {
    const writers = [diskFullWriter(1000), nodeFillWriter()];
    const { fx, cache } = await cacheWith(() => writers.shift()!);
    const diskFull = vi.fn();
    cache.onDiskFull = diskFull;
    const content = randomBytes(4000);
    const first = answer(content);
    const second = answer(content);
    const open = vi.fn<(signal: AbortSignal) => Promise<FillSource>>().mockResolvedValueOnce(first.source).mockResolvedValueOnce(second.source);
    const req = request(content, open);

    const relaying = await cache.fill(req);
    const reader = relaying.createReader();
    first.body.write(content.subarray(0, 500));
    await waitWritten(relaying, 500);
    first.body.write(content.subarray(500));
    await waitWritten(relaying, 4000);
    expect(relaying.fileBytes).toBe(500);
    expect(cache.inflight(req.digest.value)).toBeUndefined();

    const fresh = await cache.fill(req);
    expect(fresh).not.toBe(relaying);
    expect(open).toHaveBeenCalledTimes(2);
    expect(await cache.inflight(req.digest.value)).toBe(fresh);

    first.body.end();
    expect(await cache.outcome(relaying)).toBe(false);
    expect(existsSync(relaying.tempPath)).toBe(false);
    // The relaying fill ending must not drop the newer fill's claim on the digest.
    expect(await cache.inflight(req.digest.value)).toBe(fresh);
    expect(diskFull).not.toHaveBeenCalled(); // told only once the temp file's space is really free
    reader.release();
    await relaying.closed;
    await vi.waitFor(() => expect(diskFull).toHaveBeenCalledWith(expect.objectContaining({ digest: req.digest.value })));

    second.body.end(content);
    expect(await cache.outcome(fresh)).toBe(true);
    expect(fx.metadata.getBlob(req.digest.value)).toBeDefined();
  });
});

describe('BlobCache committed blobs', () => {
  it('hands out an open file range, counted as in use until released once', async () => {
    const { fx, cache } = await cacheWith();
    const digest = await fx.blob('range', 1000);
    const opened = await cache.openCommitted(fx.metadata.getBlob(digest)!, 10, 19);
    const body = opened!.body;
    expect([body.kind, body.start, body.end]).toEqual(['committed', 10, 19]);
    expect(readRange(body.fd, body.start, body.end + 1)).toEqual(Buffer.alloc(1000, 'range').subarray(10, 20));
    expect(cache.inUse(digest)).toBe(true);
    await Promise.all([body.release(), body.release()]);
    expect(cache.inUse(digest)).toBe(false);
    const again = await cache.openCommitted(fx.metadata.getBlob(digest)!);
    expect((await readBody(again!.body)).length).toBe(1000);
    expect(cache.inUse(digest)).toBe(false);
  });
});
