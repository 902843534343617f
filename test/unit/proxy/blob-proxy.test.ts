/**
 * @module test/unit/proxy/blob-proxy
 * The blob policy as a state machine, on a real cache (temp dir, SQLite metadata, BlobCache)
 * against an in-memory upstream. A committed blob this repository is known to hold is served with
 * no upstream contact; one cached for another repository is confirmed with one upstream HEAD
 * (404 → BLOB_UNKNOWN; upstream down → served STALE only when a manifest cached for this repository
 * needs it, else the outage error an uncached blob gets); a miss starts (or joins) the single fill for
 * the digest and streams from it; HEAD never starts a fill; Range requests (RFC 9110 §14) are
 * answered from the cache and from a fill alike, and a range past the end is unsatisfiable.
 */
import fs from 'node:fs';
import { rm } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BlobBody } from '../../../src/cache/blobs/blob-body.ts';
import { BlobProxy } from '../../../src/proxy/blob-proxy.ts';
import { parseDigest } from '../../../src/registry/digest.ts';
import { RegistryError } from '../../../src/registry/errors.ts';
import { waitFor } from '../../helpers/wait.ts';
import { openCacheFixture, type CacheFixture } from '../cache/cache-fixture.ts';
import { FakeUpstream, sha256 } from './fake-upstream.ts';
import { rejection } from '../../helpers/thrown.ts';

/** The fixture commits its blobs for upstream `hub`, repository `library/app`. */
const REPO = 'library/app';

/** Every byte of a body, read the way the HTTP layer would take it (no socket here); releases it. */
async function drain(body: BlobBody | undefined): Promise<Buffer> {
  if (!body) throw new Error('expected a body');
  try {
    if (body.kind === 'committed') {
      const buf = Buffer.alloc(body.end + 1 - body.start);
      const n = fs.readSync(body.fd, buf, 0, buf.length, body.start);
      return buf.subarray(0, n);
    }
    const chunks: Buffer[] = [];
    for (let i = 0; i < 100_000; i++) {
      const w = body.window();
      if (w.kind === 'failed') throw w.error ?? new Error('fill failed');
      if (w.kind === 'done') return Buffer.concat(chunks);
      if (w.kind === 'file') {
        const buf = Buffer.alloc(w.limit - body.position);
        const n = fs.readSync(w.fd, buf, 0, buf.length, body.position);
        chunks.push(buf.subarray(0, n));
        body.advance(body.position + n);
      } else if (w.kind === 'queue') {
        const b = body.takeQueued(w.limit);
        if (b) chunks.push(Buffer.from(b));
        else await body.progress();
      } else {
        await body.progress();
      }
    }
    throw new Error('the fill reader never finished');
  } finally {
    await body.release();
  }
}

/** Distinct, non-repeating content, so a misplaced range shows. */
function content(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed.charCodeAt(i % seed.length)) & 0xff;
  return out;
}

let fx: CacheFixture;
let upstream: FakeUpstream;
let proxy: BlobProxy;

beforeEach(async () => {
  fx = await openCacheFixture();
  upstream = new FakeUpstream('hub');
  proxy = new BlobProxy({ blobs: fx.blobs, hot: fx.hot });
});
afterEach(async () => {
  await fx.blobs.settle(5_000);
  await fx.close();
});

const GET = { method: 'GET', range: undefined } as const;
const HEAD = { method: 'HEAD', range: undefined } as const;

describe('BlobProxy with the blob cached', () => {
  it('serves a blob this repository holds from disk with no upstream contact', async () => {
    const digest = await fx.blob('a', 1000);
    const res = await proxy.get(upstream.route(REPO), parseDigest(digest), GET);
    expect(res).toMatchObject({ digest, size: 1000, cache: 'HIT', range: undefined });
    expect(res.body?.kind).toBe('committed');
    expect(sha256(await drain(res.body))).toBe(digest);
    expect(upstream.requests).toEqual([]);
  });

  it('answers HEAD with the size and no body', async () => {
    const digest = await fx.blob('a', 1000);
    expect(await proxy.get(upstream.route(REPO), parseDigest(digest), HEAD)).toEqual({ digest, size: 1000, cache: 'HIT', range: undefined, body: undefined });
    expect(upstream.requests).toEqual([]);
  });

  it('answers a Range with exactly those bytes, and a suffix range with the tail', async () => {
    const digest = await fx.blob('a', 1000);
    const whole = await drain((await proxy.get(upstream.route(REPO), parseDigest(digest), GET)).body);
    const mid = await proxy.get(upstream.route(REPO), parseDigest(digest), { method: 'GET', range: 'bytes=10-19' });
    expect(mid.range).toEqual({ start: 10, end: 19 });
    expect((await drain(mid.body)).equals(whole.subarray(10, 20))).toBe(true);
    const tail = await proxy.get(upstream.route(REPO), parseDigest(digest), { method: 'GET', range: 'bytes=-5' });
    expect(tail.range).toEqual({ start: 995, end: 999 });
    expect((await drain(tail.body)).equals(whole.subarray(995))).toBe(true);
  });

  it('answers a range past the end as unsatisfiable, with the size and no body', async () => {
    const digest = await fx.blob('a', 1000);
    const res = await proxy.get(upstream.route(REPO), parseDigest(digest), { method: 'GET', range: 'bytes=1000-' });
    expect(res).toEqual({ digest, size: 1000, cache: 'HIT', range: 'unsatisfiable', body: undefined });
  });

  it('confirms a blob cached for another repository with one HEAD, links it, and asks no more', async () => {
    const digest = await fx.blob('a', 1000);
    upstream.putBlob('team/other', fs.readFileSync(fx.paths.blobFile(digest.slice(7))));
    const first = await proxy.get(upstream.route('team/other'), parseDigest(digest), GET);
    expect(first.cache).toBe('HIT');
    expect(sha256(await drain(first.body))).toBe(digest);
    expect(upstream.log).toEqual([`HEAD team/other/blobs/${digest}`]);
    expect(fx.metadata.hasLink('hub', 'team/other', digest)).toBe(true);
    await drain((await proxy.get(upstream.route('team/other'), parseDigest(digest), GET)).body);
    expect(upstream.requests).toHaveLength(1);
  });

  it('refuses a blob cached for another repository that the upstream says this one does not hold', async () => {
    const digest = await fx.blob('a', 1000);
    const err = await rejection(proxy.get(upstream.route('private/repo'), parseDigest(digest), GET));
    expect(err.code).toBe('BLOB_UNKNOWN');
    expect(fx.metadata.hasLink('hub', 'private/repo', digest)).toBe(false);
    expect(upstream.log).toEqual([`HEAD private/repo/blobs/${digest}`]);
  });

  it('refuses a blob cached for another repository with the outage error while the upstream is down, when nothing cached ties it to that repository', async () => {
    const digest = await fx.blob('a', 1000);
    upstream.fault(() => 'down');
    for (const req of [GET, HEAD]) {
      const err = await rejection(proxy.get(upstream.route('private/repo'), parseDigest(digest), req));
      expect(err.code, req.method).toBe('UNAVAILABLE');
      expect(err.status).toBe(503);
    }
    upstream.fault(() => ({ status: 429, headers: { 'retry-after': '7' } }));
    const limited = await rejection(proxy.get(upstream.route('private/repo'), parseDigest(digest), GET));
    expect(limited.code).toBe('TOOMANYREQUESTS');
    expect(fx.metadata.hasLink('hub', 'private/repo', digest)).toBe(false);
    expect(fx.hot.hasLink('hub', 'private/repo', digest)).toBe(false);
  });

  it('serves a blob cached for another repository STALE while the upstream is down when a manifest cached for this repository needs it, without linking it', async () => {
    const config = await fx.blob('config', 100);
    const layer = await fx.blob('layer', 1000);
    const manifest = fx.image({ config, layers: [layer], repo: 'team/other' });
    fx.index([manifest], { repo: 'team/third' });
    upstream.fault(() => 'down');
    for (const repo of ['team/other', 'team/third']) {
      const res = await proxy.get(upstream.route(repo), parseDigest(layer), GET);
      expect(res.cache, repo).toBe('STALE');
      expect(sha256(await drain(res.body))).toBe(layer);
      expect(fx.metadata.hasLink('hub', repo, layer)).toBe(false);
    }
    expect((await rejection(proxy.get(upstream.route('team/fourth'), parseDigest(layer), GET))).code).toBe('UNAVAILABLE');
  });

  it('refetches a blob whose file vanished under its row', async () => {
    const digest = await fx.blob('a', 1000);
    const bytes = fs.readFileSync(fx.paths.blobFile(digest.slice(7)));
    upstream.putBlob(REPO, bytes);
    await rm(fx.paths.blobFile(digest.slice(7)));
    const res = await proxy.get(upstream.route(REPO), parseDigest(digest), GET);
    expect(res.cache).toBe('MISS');
    expect((await drain(res.body)).equals(bytes)).toBe(true);
    expect(upstream.log).toEqual([`GET ${REPO}/blobs/${digest}`]);
  });
});

describe('BlobProxy with the blob not cached', () => {
  it('starts a fill, streams the bytes as MISS, then commits and links the blob so the next request is a HIT', async () => {
    const bytes = content(300_000, 'fill');
    const digest = upstream.putBlob('app', bytes);
    const res = await proxy.get(upstream.route('app'), parseDigest(digest), GET);
    expect(res).toMatchObject({ digest, size: bytes.length, cache: 'MISS', range: undefined });
    expect(res.body?.kind).toBe('fill');
    expect((await drain(res.body)).equals(bytes)).toBe(true);
    expect(upstream.log).toEqual([`GET app/blobs/${digest}`]);
    await waitFor('the blob to be committed', () => fx.metadata.getBlob(digest), 5_000, 5);
    expect(fx.metadata.getBlob(digest)?.size).toBe(bytes.length);
    expect(fx.metadata.hasLink('hub', 'app', digest)).toBe(true);
    const again = await proxy.get(upstream.route('app'), parseDigest(digest), GET);
    expect(again.cache).toBe('HIT');
    expect((await drain(again.body)).equals(bytes)).toBe(true);
    expect(upstream.requests).toHaveLength(1);
  });

  it('sends one upstream GET for concurrent misses, and gives every client the whole blob', async () => {
    const bytes = content(200_000, 'herd');
    const digest = upstream.putBlob('app', bytes);
    const open = upstream.hold();
    const calls = Array.from({ length: 6 }, () => proxy.get(upstream.route('app'), parseDigest(digest), GET));
    open();
    const results = await Promise.all(calls);
    const bodies = await Promise.all(results.map((r) => drain(r.body)));
    for (const b of bodies) expect(b.equals(bytes)).toBe(true);
    expect(results.every((r) => r.cache === 'MISS')).toBe(true);
    expect(upstream.requests).toHaveLength(1);
  });

  it('answers a Range on a miss from the fill', async () => {
    const bytes = content(100_000, 'range');
    const digest = upstream.putBlob('app', bytes);
    const res = await proxy.get(upstream.route('app'), parseDigest(digest), { method: 'GET', range: 'bytes=1000-1999' });
    expect(res).toMatchObject({ size: bytes.length, cache: 'MISS', range: { start: 1000, end: 1999 } });
    expect((await drain(res.body)).equals(bytes.subarray(1000, 2000))).toBe(true);
  });

  it('answers a range past the end of an uncached blob as unsatisfiable, still caching the blob', async () => {
    const bytes = content(1000, 'short');
    const digest = upstream.putBlob('app', bytes);
    const res = await proxy.get(upstream.route('app'), parseDigest(digest), { method: 'GET', range: 'bytes=5000-' });
    expect(res).toEqual({ digest, size: 1000, cache: 'MISS', range: 'unsatisfiable', body: undefined });
    await waitFor('the blob to be committed', () => fx.metadata.getBlob(digest), 5_000, 5);
  });

  it('answers HEAD from an upstream HEAD, with the upstream\'s length, without starting a fill', async () => {
    const bytes = content(4321, 'head');
    const digest = upstream.putBlob('app', bytes);
    expect(await proxy.get(upstream.route('app'), parseDigest(digest), HEAD)).toEqual({ digest, size: 4321, cache: 'MISS', range: undefined, body: undefined });
    expect(upstream.log).toEqual([`HEAD app/blobs/${digest}`]);
    expect(fx.blobs.activeFills).toBe(0);
    expect(fx.metadata.getBlob(digest)).toBeUndefined();
  });

  it('answers BLOB_UNKNOWN for a blob the upstream does not have, on GET and HEAD, and stores nothing', async () => {
    const digest = sha256('never pushed');
    for (const req of [GET, HEAD]) {
      const err = await rejection(proxy.get(upstream.route('app'), parseDigest(digest), req));
      expect(err.code, req.method).toBe('BLOB_UNKNOWN');
      expect(err.status).toBe(404);
    }
    expect(fx.metadata.getBlob(digest)).toBeUndefined();
  });

  it('answers UNAVAILABLE when the upstream is down, and a retry starts afresh once it is back', async () => {
    const bytes = content(1000, 'retry');
    const digest = upstream.putBlob('app', bytes);
    upstream.fault(() => 'down');
    expect((await rejection(proxy.get(upstream.route('app'), parseDigest(digest), GET))).code).toBe('UNAVAILABLE');
    upstream.fault(undefined);
    expect((await drain((await proxy.get(upstream.route('app'), parseDigest(digest), GET)).body)).equals(bytes)).toBe(true);
    expect(upstream.requests).toHaveLength(2);
  });

  it('fails the body and commits nothing when the upstream sends bytes that do not match the digest', async () => {
    const bytes = content(50_000, 'good');
    const digest = upstream.putBlob('app', bytes);
    const corrupt = Buffer.from(bytes);
    corrupt[0] = corrupt[0]! ^ 0xff;
    upstream.fault((req) => (req.method === 'GET' ? { status: 200, body: corrupt } : undefined));
    const res = await proxy.get(upstream.route('app'), parseDigest(digest), GET);
    await expect(drain(res.body)).rejects.toThrow();
    await fx.blobs.settle(5_000);
    expect(fx.metadata.getBlob(digest)).toBeUndefined();
    expect(fs.readdirSync(fx.paths.tmp)).toEqual([]);
  });
});

describe('BlobProxy.prefetch', () => {
  it('fetches an uncached blob and waits for its commit, and is a no-op once it is cached', async () => {
    const bytes = content(10_000, 'prefetch');
    const digest = upstream.putBlob('app', bytes);
    expect(await proxy.prefetch(upstream.route('app'), parseDigest(digest))).toBe('fetched');
    expect(fx.metadata.getBlob(digest)?.size).toBe(bytes.length);
    expect(await proxy.prefetch(upstream.route('app'), parseDigest(digest))).toBe('cached');
    expect(upstream.requests).toHaveLength(1);
  });
});
