/**
 * @module test/unit/proxy/manifest-proxy
 * The manifest policy as a state machine, on a real Metadata (temp SQLite) with a clock the test
 * moves, against an in-memory upstream. By tag: fresh for tagTTL (no upstream contact); past it,
 * revalidated with one HEAD and refetched only when the digest moved; served STALE while the
 * upstream is unreachable, rate-limiting or failing with a 5xx, asking it again at most once per
 * backoff (min(STALE_RETRY_MS, tagTTL)). By digest: immutable once this repository is known to hold
 * it; one HEAD to confirm a digest cached for another repository (upstream down: served STALE only
 * when an index cached for this repository needs it). Upstream 404 → MANIFEST_UNKNOWN,
 * bytes that do not match the digest → BAD_GATEWAY with nothing stored, concurrent misses → one
 * upstream request.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HotCache } from '../../../src/cache/hot-cache.ts';
import { MANIFEST_MAX_BYTES, ManifestProxy, STALE_RETRY_MS } from '../../../src/proxy/manifest-proxy.ts';
import { parseDigest } from '../../../src/registry/digest.ts';
import { DEFAULT_ACCEPT, MEDIA_TYPES } from '../../../src/registry/media-types.ts';
import type { Reference } from '../../../src/registry/reference.ts';
import { RegistryError } from '../../../src/registry/errors.ts';
import { silentLogger } from '../../../src/util/logger.ts';
import { openCacheFixture, type CacheFixture } from '../cache/cache-fixture.ts';
import { FakeUpstream, sha256 } from './fake-upstream.ts';
import { rejection } from '../../helpers/thrown.ts';
import { setUpstreamTimeout, stallBodies } from './stalling-upstream.ts';

const TTL = 60_000;
const ANY: string[] = [];
const tag = (t: string): Reference => ({ kind: 'tag', tag: t });
const byDigest = (d: string): Reference => ({ kind: 'digest', digest: parseDigest(d) });

function image(n: number) {
  return { schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(`config ${n}`), size: 10 }, layers: [] };
}

let fx: CacheFixture;
let upstream: FakeUpstream;
let proxy: ManifestProxy;

beforeEach(async () => {
  fx = await openCacheFixture();
  upstream = new FakeUpstream('up', { tagTTL: `${TTL}ms` });
  proxy = new ManifestProxy({ metadata: fx.metadata, hot: fx.hot, log: silentLogger, now: fx.now });
});
afterEach(async () => {
  await fx.close();
});

describe('ManifestProxy by tag', () => {
  it('fetches an unknown tag with the full Accept list, stores it, and answers MISS', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    const res = await proxy.get(upstream.route('app'), tag('latest'), ANY);
    expect(res).toMatchObject({ digest: v1.digest, mediaType: v1.mediaType, cache: 'MISS' });
    expect(res.bytes.equals(v1.bytes)).toBe(true);
    expect(upstream.log).toEqual(['GET app/manifests/latest']);
    expect(upstream.requests[0]?.headers?.accept).toBe(DEFAULT_ACCEPT);
    expect(fx.metadata.getTag('up', 'app', 'latest')).toMatchObject({ digest: v1.digest, fetchedAt: fx.now() });
    expect(fx.metadata.getManifest(v1.digest)?.bytes.equals(v1.bytes)).toBe(true);
    expect(fx.metadata.hasLink('up', 'app', v1.digest)).toBe(true);
  });

  it('answers a tag within its tagTTL from the cache, with no upstream contact, synchronously too', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    fx.advance(TTL - 1);
    expect(await proxy.get(upstream.route('app'), tag('latest'), ANY)).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(proxy.hit(upstream.route('app'), tag('latest'), ANY)).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(upstream.requests).toHaveLength(1);
  });

  it('answers a fresh tag from the database after a restart (empty hot cache)', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    const restarted = new ManifestProxy({ metadata: fx.metadata, hot: new HotCache({ maxSize: 1 << 20 }), log: silentLogger, now: fx.now });
    fx.advance(TTL / 2);
    const res = restarted.hit(upstream.route('app'), tag('latest'), ANY);
    expect(res).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(res?.bytes.equals(v1.bytes)).toBe(true);
    expect(upstream.requests).toHaveLength(1);
  });

  it('leaves an expired tag to the upstream path: hit() answers undefined', async () => {
    upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    fx.advance(TTL);
    expect(proxy.hit(upstream.route('app'), tag('latest'), ANY)).toBeUndefined();
    expect(upstream.requests).toHaveLength(1);
  });

  it('revalidates an expired tag with one HEAD and no GET when the digest is unchanged, then is fresh again', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    fx.advance(TTL);
    const res = await proxy.get(upstream.route('app'), tag('latest'), ANY);
    expect(res).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(upstream.log).toEqual(['GET app/manifests/latest', 'HEAD app/manifests/latest']);
    expect(upstream.requests[1]?.headers?.accept).toBe(DEFAULT_ACCEPT);
    expect(fx.metadata.getTag('up', 'app', 'latest')?.fetchedAt).toBe(fx.now());
    fx.advance(TTL - 1);
    expect(proxy.hit(upstream.route('app'), tag('latest'), ANY)).toMatchObject({ cache: 'HIT' });
    expect(upstream.requests).toHaveLength(2);
  });

  it('refetches an expired tag whose upstream digest moved, and answers MISS with the new manifest', async () => {
    upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    const v2 = upstream.putManifest('app', image(2), { tags: ['latest'] });
    fx.advance(TTL - 1);
    expect((await proxy.get(upstream.route('app'), tag('latest'), ANY)).cache).toBe('HIT'); // still within TTL
    fx.advance(1);
    const res = await proxy.get(upstream.route('app'), tag('latest'), ANY);
    expect(res).toMatchObject({ digest: v2.digest, cache: 'MISS' });
    expect(res.bytes.equals(v2.bytes)).toBe(true);
    expect(upstream.log).toEqual(['GET app/manifests/latest', 'HEAD app/manifests/latest', 'GET app/manifests/latest']);
    expect(fx.metadata.getTag('up', 'app', 'latest')?.digest).toBe(v2.digest);
    expect(proxy.hit(upstream.route('app'), tag('latest'), ANY)?.digest).toBe(v2.digest);
  });

  it('serves an expired tag STALE while the upstream is down, asking again only once the backoff is over', async () => {
    const ttl = 10 * STALE_RETRY_MS; // the backoff is the shorter of the two
    upstream = new FakeUpstream('up', { tagTTL: `${ttl}ms` });
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    fx.advance(ttl);
    upstream.fault(() => 'down');
    const stale = await proxy.get(upstream.route('app'), tag('latest'), ANY);
    expect(stale).toMatchObject({ digest: v1.digest, cache: 'STALE' });
    expect(stale.bytes.equals(v1.bytes)).toBe(true);
    expect(upstream.requests).toHaveLength(2);

    fx.advance(STALE_RETRY_MS - 1);
    for (let i = 0; i < 3; i++) expect((await proxy.get(upstream.route('app'), tag('latest'), ANY)).cache).toBe('STALE');
    expect(upstream.requests).toHaveLength(2);

    fx.advance(1);
    expect((await proxy.get(upstream.route('app'), tag('latest'), ANY)).cache).toBe('STALE');
    expect(upstream.requests).toHaveLength(3);

    upstream.fault(undefined);
    fx.advance(STALE_RETRY_MS);
    expect(await proxy.get(upstream.route('app'), tag('latest'), ANY)).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(upstream.log.at(-1)).toBe('HEAD app/manifests/latest');
    expect(proxy.hit(upstream.route('app'), tag('latest'), ANY)?.cache).toBe('HIT');
  });

  it('bounds the backoff by the tag\'s own TTL', async () => {
    const ttl = STALE_RETRY_MS / 4;
    upstream = new FakeUpstream('up', { tagTTL: `${ttl}ms` });
    upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    fx.advance(ttl);
    upstream.fault(() => 'down');
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    fx.advance(ttl);
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    expect(upstream.requests).toHaveLength(3);
  });

  it('serves STALE when the upstream rate-limits or fails with a 5xx, but not when it refuses access', async () => {
    upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    for (const status of [429, 500, 502, 503]) {
      const fresh = new ManifestProxy({ metadata: fx.metadata, hot: new HotCache({ maxSize: 1 << 20 }), log: silentLogger, now: fx.now });
      fx.advance(TTL);
      upstream.fault(() => ({ status }));
      expect((await fresh.get(upstream.route('app'), tag('latest'), ANY)).cache, String(status)).toBe('STALE');
    }
    fx.advance(TTL);
    upstream.fault(() => ({ status: 401 }));
    const fresh = new ManifestProxy({ metadata: fx.metadata, hot: new HotCache({ maxSize: 1 << 20 }), log: silentLogger, now: fx.now });
    expect((await rejection(fresh.get(upstream.route('app'), tag('latest'), ANY))).code).toBe('DENIED');
  });

  it('answers MANIFEST_UNKNOWN for a tag the upstream does not have', async () => {
    const err = await rejection(proxy.get(upstream.route('app'), tag('nope'), ANY));
    expect(err.code).toBe('MANIFEST_UNKNOWN');
    expect(err.status).toBe(404);
    expect(fx.metadata.getTag('up', 'app', 'nope')).toBeUndefined();
  });

  it('forgets an expired tag the upstream no longer has, and answers MANIFEST_UNKNOWN', async () => {
    upstream.putManifest('app', image(1), { tags: ['gone'] });
    await proxy.get(upstream.route('app'), tag('gone'), ANY);
    fx.advance(TTL);
    upstream.fault((req) => (req.path.endsWith('/gone') ? { status: 404 } : undefined));
    expect((await rejection(proxy.get(upstream.route('app'), tag('gone'), ANY))).code).toBe('MANIFEST_UNKNOWN');
    expect(fx.metadata.getTag('up', 'app', 'gone')).toBeUndefined();
    expect(proxy.hit(upstream.route('app'), tag('gone'), ANY)).toBeUndefined();
  });

  it('answers BAD_GATEWAY and stores nothing when the bytes do not match the announced Docker-Content-Digest', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    const other = sha256('something else');
    upstream.fault((req) => (req.method === 'GET' ? { status: 200, headers: { 'content-type': v1.mediaType, 'docker-content-digest': other }, body: v1.bytes } : undefined));
    const err = await rejection(proxy.get(upstream.route('app'), tag('latest'), ANY));
    expect(err.code).toBe('BAD_GATEWAY');
    expect(err.detail).toMatchObject({ expected: other, actual: v1.digest });
    expect(fx.metadata.getTag('up', 'app', 'latest')).toBeUndefined();
    expect(fx.metadata.getManifest(v1.digest)).toBeUndefined();
  });

  it('answers BAD_GATEWAY for a manifest larger than it accepts', async () => {
    upstream.fault(() => ({ status: 200, headers: { 'content-type': MEDIA_TYPES.ociManifest }, body: Buffer.alloc(MANIFEST_MAX_BYTES + 1, 0x20) }));
    const err = await rejection(proxy.get(upstream.route('app'), tag('huge'), ANY));
    expect(err.code).toBe('BAD_GATEWAY');
    expect(err.message).toMatch(/larger than/);
  });

  it('sends one upstream GET for concurrent misses of the same tag, and gives every caller its result', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    const open = upstream.hold();
    const calls = Array.from({ length: 8 }, () => proxy.get(upstream.route('app'), tag('latest'), ANY));
    await Promise.resolve();
    open();
    const results = await Promise.all(calls);
    expect(upstream.log).toEqual(['GET app/manifests/latest']);
    for (const r of results) expect(r).toMatchObject({ digest: v1.digest, cache: 'MISS' });
  });

  it('sends one HEAD for concurrent requests of the same expired tag', async () => {
    upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    fx.advance(TTL);
    const open = upstream.hold();
    const calls = Array.from({ length: 8 }, () => proxy.get(upstream.route('app'), tag('latest'), ANY));
    open();
    for (const r of await Promise.all(calls)) expect(r.cache).toBe('HIT');
    expect(upstream.log).toEqual(['GET app/manifests/latest', 'HEAD app/manifests/latest']);
  });

  it('lets a caller retry after a shared failure instead of replaying it', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    upstream.fault(() => 'down');
    expect((await rejection(proxy.get(upstream.route('app'), tag('latest'), ANY))).code).toBe('UNAVAILABLE');
    upstream.fault(undefined);
    expect(await proxy.get(upstream.route('app'), tag('latest'), ANY)).toMatchObject({ digest: v1.digest, cache: 'MISS' });
  });

  it('keeps tags of different repositories and upstreams apart', async () => {
    const a = upstream.putManifest('a', image(1), { tags: ['latest'] });
    const b = upstream.putManifest('b', image(2), { tags: ['latest'] });
    expect((await proxy.get(upstream.route('a'), tag('latest'), ANY)).digest).toBe(a.digest);
    expect((await proxy.get(upstream.route('b'), tag('latest'), ANY)).digest).toBe(b.digest);
    const other = new FakeUpstream('other', { tagTTL: `${TTL}ms` });
    expect(proxy.hit(other.route('a'), tag('latest'), ANY)).toBeUndefined();
  });

  it('passes a client\'s own Accept through when the tag resolves to a type it cannot take', async () => {
    const index = upstream.putManifest('app', { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [] }, { mediaType: MEDIA_TYPES.ociIndex, tags: ['latest'] });
    const docker = upstream.putManifest('app', { schemaVersion: 2, mediaType: MEDIA_TYPES.dockerManifest, layers: [] }, { mediaType: MEDIA_TYPES.dockerManifest });
    // The upstream negotiates: an old client asking only for Docker v2 gets the single manifest.
    upstream.fault((req) => {
      const old = req.headers?.accept === MEDIA_TYPES.dockerManifest;
      return req.method === 'GET' && old ? { status: 200, headers: { 'content-type': docker.mediaType, 'docker-content-digest': docker.digest }, body: docker.bytes } : undefined;
    });
    const res = await proxy.get(upstream.route('app'), tag('latest'), [MEDIA_TYPES.dockerManifest]);
    expect(res).toMatchObject({ digest: docker.digest, mediaType: MEDIA_TYPES.dockerManifest, cache: 'MISS' });
    expect(upstream.requests.map((r) => r.headers?.accept)).toEqual([DEFAULT_ACCEPT, MEDIA_TYPES.dockerManifest]);
    // The tag itself stays mapped to what a modern client sees.
    expect(fx.metadata.getTag('up', 'app', 'latest')?.digest).toBe(index.digest);
    expect(proxy.hit(upstream.route('app'), tag('latest'), ANY)?.digest).toBe(index.digest);
  });

  it('refresh() revalidates a tag within its TTL, and fetches one it does not know', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    expect(await proxy.refresh(upstream.route('app'), 'latest')).toMatchObject({ digest: v1.digest, cache: 'MISS' });
    expect(await proxy.refresh(upstream.route('app'), 'latest')).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(upstream.log).toEqual(['GET app/manifests/latest', 'HEAD app/manifests/latest']);
  });
});

describe('ManifestProxy by digest', () => {
  it('fetches an uncached digest once, then serves it with no upstream contact however much time passes', async () => {
    const v1 = upstream.putManifest('app', image(1));
    expect(await proxy.get(upstream.route('app'), byDigest(v1.digest), ANY)).toMatchObject({ digest: v1.digest, cache: 'MISS' });
    fx.advance(365 * 86_400_000);
    upstream.fault(() => 'down');
    expect(await proxy.get(upstream.route('app'), byDigest(v1.digest), ANY)).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(proxy.hit(upstream.route('app'), byDigest(v1.digest), ANY)?.cache).toBe('HIT');
    expect(upstream.log).toEqual([`GET app/manifests/${v1.digest}`]);
  });

  it('confirms a digest cached for another repository with one HEAD, then links it', async () => {
    const v1 = upstream.putManifest('a', image(1));
    upstream.putManifest('b', image(1));
    await proxy.get(upstream.route('a'), byDigest(v1.digest), ANY);
    expect(proxy.hit(upstream.route('b'), byDigest(v1.digest), ANY)).toBeUndefined();
    expect(await proxy.get(upstream.route('b'), byDigest(v1.digest), ANY)).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(upstream.log).toEqual([`GET a/manifests/${v1.digest}`, `HEAD b/manifests/${v1.digest}`]);
    expect(fx.metadata.hasLink('up', 'b', v1.digest)).toBe(true);
    expect(proxy.hit(upstream.route('b'), byDigest(v1.digest), ANY)?.cache).toBe('HIT');
  });

  it('refuses a digest cached for another repository that the upstream says this one does not hold', async () => {
    const v1 = upstream.putManifest('a', image(1));
    await proxy.get(upstream.route('a'), byDigest(v1.digest), ANY);
    const err = await rejection(proxy.get(upstream.route('private'), byDigest(v1.digest), ANY));
    expect(err.code).toBe('MANIFEST_UNKNOWN');
    expect(fx.metadata.hasLink('up', 'private', v1.digest)).toBe(false);
  });

  it('refuses a digest cached for another repository with the outage error while the upstream is down, unless an index cached for that repository needs it', async () => {
    const v1 = upstream.putManifest('a', image(1));
    await proxy.get(upstream.route('a'), byDigest(v1.digest), ANY);
    fx.index([v1.digest], { upstream: 'up', repo: 'c' });
    upstream.fault(() => 'down');
    expect((await rejection(proxy.get(upstream.route('b'), byDigest(v1.digest), ANY))).code).toBe('UNAVAILABLE');
    expect(await proxy.get(upstream.route('c'), byDigest(v1.digest), ANY)).toMatchObject({ digest: v1.digest, cache: 'STALE' });
    expect(fx.metadata.hasLink('up', 'b', v1.digest)).toBe(false);
    expect(fx.metadata.hasLink('up', 'c', v1.digest)).toBe(false);
  });

  it('answers BAD_GATEWAY and stores nothing when the bytes do not match the digest asked for', async () => {
    const v1 = upstream.putManifest('app', image(1));
    const v2 = upstream.putManifest('app', image(2));
    upstream.fault((req) => (req.path.endsWith(v1.digest) ? { status: 200, headers: { 'content-type': v2.mediaType }, body: v2.bytes } : undefined));
    const err = await rejection(proxy.get(upstream.route('app'), byDigest(v1.digest), ANY));
    expect(err.code).toBe('BAD_GATEWAY');
    expect(err.message).toContain('does not match');
    expect(fx.metadata.getManifest(v1.digest)).toBeUndefined();
    expect(fx.metadata.getManifest(v2.digest)).toBeUndefined();
  });

  it('answers MANIFEST_UNKNOWN for a digest the upstream does not have, and UNAVAILABLE when it is down', async () => {
    const missing = sha256('never pushed');
    expect((await rejection(proxy.get(upstream.route('app'), byDigest(missing), ANY))).code).toBe('MANIFEST_UNKNOWN');
    upstream.fault(() => 'down');
    expect((await rejection(proxy.get(upstream.route('app'), byDigest(missing), ANY))).code).toBe('UNAVAILABLE');
  });

  it('sends one upstream GET for concurrent misses of the same digest', async () => {
    const v1 = upstream.putManifest('app', image(1));
    const open = upstream.hold();
    const calls = Array.from({ length: 8 }, () => proxy.get(upstream.route('app'), byDigest(v1.digest), ANY));
    open();
    for (const r of await Promise.all(calls)) expect(r.digest).toBe(v1.digest);
    expect(upstream.requests).toHaveLength(1);
  });
});

// Each of these would wait forever without the upstream's timeout as a bound; 5 s ends them instead.
describe('ManifestProxy when the upstream stalls', { timeout: 5_000 }, () => {
  beforeEach(() => setUpstreamTimeout(upstream, 100));

  it('answers UNAVAILABLE within the timeout when a manifest body stalls after its head, and stores nothing', async () => {
    upstream.putManifest('app', image(1), { tags: ['latest'] });
    stallBodies(upstream, () => true);
    const err = await rejection(proxy.get(upstream.route('app'), tag('latest'), ANY));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('timed out');
    expect(fx.metadata.getTag('up', 'app', 'latest')).toBeUndefined();
  });

  it('answers UNAVAILABLE when a pass-through fetch with the client’s own Accept stalls', async () => {
    const index = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [] };
    upstream.putManifest('app', index, { mediaType: MEDIA_TYPES.ociIndex, tags: ['latest'] });
    stallBodies(upstream, (req) => req.headers?.accept === MEDIA_TYPES.dockerManifest);
    const err = await rejection(proxy.get(upstream.route('app'), tag('latest'), [MEDIA_TYPES.dockerManifest]));
    expect(err.code).toBe('UNAVAILABLE');
  });

  it('serves a cached tag STALE when it moved upstream and the new manifest’s body stalls', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    fx.advance(TTL);
    upstream.putManifest('app', image(2), { tags: ['latest'] });
    stallBodies(upstream, () => true);
    expect(await proxy.get(upstream.route('app'), tag('latest'), ANY)).toMatchObject({ digest: v1.digest, cache: 'STALE' });
    expect(upstream.log).toEqual(['GET app/manifests/latest', 'HEAD app/manifests/latest', 'GET app/manifests/latest']);
    expect(fx.metadata.getTag('up', 'app', 'latest')?.digest).toBe(v1.digest);
  });

  it('lets every client of a shared fetch give up after the timeout, while the fetch goes on and is cached', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    const open = upstream.hold();
    try {
      const errs = await Promise.all([1, 2].map(() => rejection(proxy.get(upstream.route('app'), tag('latest'), ANY))));
      expect(errs.map((e) => e.code)).toEqual(['UNAVAILABLE', 'UNAVAILABLE']);
      expect(upstream.requests).toHaveLength(1);
    } finally {
      open();
    }
    expect(await proxy.get(upstream.route('app'), tag('latest'), ANY)).toMatchObject({ digest: v1.digest });
    expect(upstream.requests).toHaveLength(1);
  });

  it('serves a cached tag STALE to a client that waited the timeout for its revalidation', async () => {
    const v1 = upstream.putManifest('app', image(1), { tags: ['latest'] });
    await proxy.get(upstream.route('app'), tag('latest'), ANY);
    fx.advance(TTL);
    const open = upstream.hold();
    try {
      expect(await proxy.get(upstream.route('app'), tag('latest'), ANY)).toMatchObject({ digest: v1.digest, cache: 'STALE' });
    } finally {
      open();
    }
  });
});
