/**
 * @module test/unit/proxy/manifest-proxy-peer
 * Where a replica in a cluster resolves a tag it must ask about (unknown here, or past its TTL):
 * the upstream when it owns the tag; the owner otherwise, whose bytes are checked against the
 * digest it announces and then kept fresh as an upstream answer would be. An owner that fails
 * (error status, unreachable, stale copy, bytes not matching its digest) is passed over for the
 * upstream; its 404 is final. Requests from peers, hits and watch-list refreshes never ask a peer.
 */
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManifestProxy } from '../../../src/proxy/manifest-proxy.ts';
import { PeerTags, tagKey } from '../../../src/cluster/peer-tags.ts';
import type { PeerGet, PeerResponse, PeerResult } from '../../../src/cluster/peer-request.ts';
import { PeerAuth } from '../../../src/cluster/peer-auth.ts';
import { owner } from '../../../src/cluster/rendezvous.ts';
import { MEDIA_TYPES } from '../../../src/registry/media-types.ts';
import type { Reference } from '../../../src/registry/reference.ts';
import { parseDigest } from '../../../src/registry/digest.ts';
import { RegistryError } from '../../../src/registry/errors.ts';
import { silentLogger } from '../../../src/util/logger.ts';
import { openCacheFixture, type CacheFixture } from '../cache/cache-fixture.ts';
import { FakeUpstream, sha256 } from './fake-upstream.ts';
import { rejection } from '../../helpers/thrown.ts';

const TTL = 60_000;
const ANY: string[] = [];
const SELF = 'http://10.0.0.1:5000';
const OTHER = 'http://10.0.0.2:5000';
const UP = [SELF, OTHER];
const tag = (t: string): Reference => ({ kind: 'tag', tag: t });

function image(n: number) {
  return { schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(`config ${n}`), size: 10 }, layers: [] };
}

/** A tag of repository `app` on upstream `up` whose owner among UP is `who`. */
function tagOwnedBy(who: string): string {
  for (let i = 0; i < 1000; i++) if (owner(tagKey('up', 'app', `t${i}`), UP) === who) return `t${i}`;
  throw new Error('no tag found');
}

const manifestAnswer = (m: { digest: string; bytes: Buffer; mediaType: string }, headers: Record<string, string> = {}): PeerResponse => ({
  status: 200,
  headers: { 'docker-content-digest': m.digest, 'content-type': m.mediaType, 'x-cache': 'HIT', ...headers },
  body: Readable.from([m.bytes]),
});
const statusAnswer = (status: number): PeerResponse => ({ status, headers: {}, body: Readable.from([Buffer.from('{"errors":[]}')]) });

let fx: CacheFixture;
let upstream: FakeUpstream;
let peerAnswer: PeerGet;
let peerCalls: string[];
let results: PeerResult[];
let proxy: ManifestProxy;

beforeEach(async () => {
  fx = await openCacheFixture();
  upstream = new FakeUpstream('up', { tagTTL: `${TTL}ms` });
  peerCalls = [];
  results = [];
  peerAnswer = () => Promise.reject(new Error('no peer answer set'));
  const peerTags = new PeerTags({
    membership: { self: SELF, up: () => UP },
    auth: new PeerAuth('manifest-proxy-peer-secret-0123456789'),
    log: silentLogger,
    get: (url, init) => {
      peerCalls.push(url);
      return peerAnswer(url, init);
    },
    onResult: (r) => results.push(r),
  });
  proxy = new ManifestProxy({ metadata: fx.metadata, hot: fx.hot, log: silentLogger, now: fx.now, peerTags: (route, t) => peerTags.resolve(route, t) });
});
afterEach(async () => {
  await fx.close();
});

/** A tag owned by OTHER, taken from that owner once and now past its TTL: the next get revalidates it. */
async function expiredTagFromOwner(): Promise<{ t: string; v1: ReturnType<FakeUpstream['putManifest']> }> {
  const t = tagOwnedBy(OTHER);
  const v1 = upstream.putManifest('app', image(1), { tags: [t] });
  peerAnswer = async () => manifestAnswer(v1);
  await proxy.get(upstream.route('app'), tag(t), ANY);
  fx.advance(TTL);
  return { t, v1 };
}

describe('ManifestProxy in a cluster: resolving a tag', () => {
  it('asks the upstream, and no peer, for a tag this replica owns', async () => {
    const t = tagOwnedBy(SELF);
    const v1 = upstream.putManifest('app', image(1), { tags: [t] });
    expect(await proxy.get(upstream.route('app'), tag(t), ANY)).toMatchObject({ digest: v1.digest, cache: 'MISS' });
    expect(upstream.log).toEqual([`GET app/manifests/${t}`]);
    expect(peerCalls).toEqual([]);
  });

  it('takes a tag another replica owns from that owner, verified, and keeps it fresh for its own TTL', async () => {
    const t = tagOwnedBy(OTHER);
    const v1 = upstream.putManifest('app', image(1), { tags: [t] });
    peerAnswer = async () => manifestAnswer(v1);
    const res = await proxy.get(upstream.route('app'), tag(t), ANY);
    expect(res).toMatchObject({ digest: v1.digest, mediaType: v1.mediaType, cache: 'MISS' });
    expect(res.bytes.equals(v1.bytes)).toBe(true);
    expect(peerCalls).toEqual([`${OTHER}/cluster/v1/manifests/${t}?upstream=up&repo=app`]);
    expect(results).toEqual(['peer']);
    expect(upstream.requests).toEqual([]);
    expect(fx.metadata.getTag('up', 'app', t)).toMatchObject({ digest: v1.digest, fetchedAt: fx.now() });
    expect(fx.metadata.hasLink('up', 'app', v1.digest)).toBe(true);
    fx.advance(TTL - 1);
    expect(proxy.hit(upstream.route('app'), tag(t), ANY)).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(peerCalls).toHaveLength(1);
  });

  it('revalidates an expired tag with its owner: the same digest is fresh again, a moved one is stored', async () => {
    const { t, v1 } = await expiredTagFromOwner();
    expect(await proxy.get(upstream.route('app'), tag(t), ANY)).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(fx.metadata.getTag('up', 'app', t)).toMatchObject({ fetchedAt: fx.now() });
    const v2 = upstream.putManifest('app', image(2), { tags: [t] });
    peerAnswer = async () => manifestAnswer(v2);
    fx.advance(TTL);
    expect(await proxy.get(upstream.route('app'), tag(t), ANY)).toMatchObject({ digest: v2.digest, cache: 'MISS' });
    expect(fx.metadata.getTag('up', 'app', t)).toMatchObject({ digest: v2.digest, fetchedAt: fx.now() });
    expect(peerCalls).toHaveLength(3);
    expect(upstream.requests).toEqual([]);
  });

  it.each([
    ['answers 503', async () => statusAnswer(503)],
    ['cannot be reached', () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))],
    ['only has a stale copy', async () => manifestAnswer(upstream.putManifest('app', image(9)), { 'x-cache': 'STALE' })],
  ] as Array<[string, PeerGet]>)('falls back to the upstream when the owner %s', async (_what, answer) => {
    const t = tagOwnedBy(OTHER);
    const v1 = upstream.putManifest('app', image(1), { tags: [t] });
    peerAnswer = answer;
    expect(await proxy.get(upstream.route('app'), tag(t), ANY)).toMatchObject({ digest: v1.digest, cache: 'MISS' });
    expect(upstream.log).toEqual([`GET app/manifests/${t}`]);
    expect(results).toEqual(['fallback']);
  });

  it('falls back to the upstream on a revalidation the owner cannot answer, with a HEAD as a single node would', async () => {
    const { t, v1 } = await expiredTagFromOwner();
    peerAnswer = async () => statusAnswer(500);
    expect(await proxy.get(upstream.route('app'), tag(t), ANY)).toMatchObject({ digest: v1.digest, cache: 'HIT' });
    expect(upstream.log).toEqual([`HEAD app/manifests/${t}`]);
    expect(results).toEqual(['peer', 'fallback']);
  });

  it('refuses bytes whose sha256 is not the digest the owner announced: nothing of them kept, the upstream asked', async () => {
    const t = tagOwnedBy(OTHER);
    const v1 = upstream.putManifest('app', image(1), { tags: [t] });
    const forged = Buffer.from(JSON.stringify(image(666)));
    peerAnswer = async () => manifestAnswer({ ...v1, bytes: forged });
    const res = await proxy.get(upstream.route('app'), tag(t), ANY);
    expect(res.bytes.equals(v1.bytes)).toBe(true);
    expect(fx.metadata.getManifest(sha256(forged))).toBeUndefined();
    expect(upstream.log).toEqual([`GET app/manifests/${t}`]);
    expect(results).toEqual(['fallback']);
  });

  it("answers MANIFEST_UNKNOWN on the owner's 404, asking the upstream nothing, and forgets the tag", async () => {
    const { t } = await expiredTagFromOwner();
    peerAnswer = async () => statusAnswer(404);
    const err = await rejection(proxy.get(upstream.route('app'), tag(t), ANY));
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).code).toBe('MANIFEST_UNKNOWN');
    expect(fx.metadata.getTag('up', 'app', t)).toBeUndefined();
    expect(upstream.requests).toEqual([]);
    expect(results).toEqual(['peer', 'peer']);
  });

  it('resolves a tag asked for by a peer against the upstream, never forwarding it again', async () => {
    const t = tagOwnedBy(OTHER);
    const v1 = upstream.putManifest('app', image(1), { tags: [t] });
    expect(await proxy.get(upstream.route('app'), tag(t), ANY, { fromPeer: true })).toMatchObject({ digest: v1.digest, cache: 'MISS' });
    expect(upstream.log).toEqual([`GET app/manifests/${t}`]);
    expect(peerCalls).toEqual([]);
  });

  it('refreshes a watched tag against the upstream, not its owner', async () => {
    const t = tagOwnedBy(OTHER);
    const v1 = upstream.putManifest('app', image(1), { tags: [t] });
    expect(await proxy.refresh(upstream.route('app'), t)).toMatchObject({ digest: v1.digest });
    expect(upstream.log).toEqual([`GET app/manifests/${t}`]);
    expect(peerCalls).toEqual([]);
  });

  it('fetches a digest from the upstream as on a single node', async () => {
    const v1 = upstream.putManifest('app', image(1));
    expect(await proxy.get(upstream.route('app'), { kind: 'digest', digest: parseDigest(v1.digest) }, ANY)).toMatchObject({ digest: v1.digest, cache: 'MISS' });
    expect(peerCalls).toEqual([]);
  });
});
