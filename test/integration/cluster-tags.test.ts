/**
 * @module test/integration/cluster-tags
 * One upstream resolution per tag cluster-wide, as operators run it: three `ocimirror serve`
 * replicas that know each other (static peers) in front of one real upstream, behind a real
 * HAProxy balancing TCP connections round-robin. Clients asking any replica for a tag not cached
 * yet cause one upstream request for it: the replicas that do not own the tag ask the one that
 * does. With the owner killed, another replica resolves the tag against the upstream itself.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { owner } from '../../src/cluster/rendezvous.ts';
import { tagKey } from '../../src/cluster/peer-tags.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import type { SpawnedMirror } from '../helpers/mirror.ts';
import { counter, startCluster, type TestCluster } from '../helpers/cluster.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** The upstream every request in this file is routed to (mirrorConfig's default). */
const UPSTREAM = 'test';

async function getManifest(base: string, repo: string, tag: string): Promise<{ status: number; body: Buffer; digest: string | null }> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, { headers: { accept: MANIFEST_ACCEPT } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), digest: res.headers.get('docker-content-digest') };
}

describeWithTools(['docker-registry', 'haproxy'], 'one upstream resolution per tag across the cluster', () => {
  let upstream: Upstream;
  let cluster: TestCluster | undefined;
  let front: string;
  let replicas: SpawnedMirror[] = [];
  let urls: string[] = [];

  beforeAll(async () => {
    upstream = await startUpstream();
    cluster = await startCluster(upstream.url, { name: 'cluster-tags' });
    ({ urls, replicas, front } = cluster);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    await upstream?.stop();
  });

  it.each([
    ['small', 'v2'],
    ['medium', 'latest'],
  ])('resolves %s:%s asked for by 12 clients through every replica against the upstream once', async (repo, tag) => {
    const fixture = upstream.fixtures.image(`${repo}:${tag}`).manifest;
    const own = owner(tagKey(UPSTREAM, repo, tag), urls)!;
    const peerSeries = 'ocimirror_peer_tags_total{result="peer"}';
    const before = await Promise.all(urls.map((url) => counter(url, peerSeries)));
    const answers = await Promise.all(Array.from({ length: 12 }, () => getManifest(`http://${front}`, repo, tag)));
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect(a.digest).toBe(fixture.digest);
      expect(a.body.equals(fixture.bytes)).toBe(true);
    }
    expect(upstream.proxy.count({ pathIncludes: `/${repo}/manifests/${tag}` })).toBe(1);
    // Each replica not owning the tag asked the one that does, once for all its clients.
    const after = await Promise.all(urls.map((url) => counter(url, peerSeries)));
    urls.forEach((url, i) => {
      if (url === own) expect(after[i]).toBe(before[i]);
      else expect(after[i]).toBe(before[i]! + 1);
    });
    // Each replica now holds the tag fresh: asked again, none of them goes anywhere.
    for (const url of urls) expect((await getManifest(url, repo, tag)).body.equals(fixture.bytes)).toBe(true);
    expect(upstream.proxy.count({ pathIncludes: `/${repo}/manifests/${tag}` })).toBe(1);
  });

  it('answers 404 for a tag the upstream lacks, asked through a replica that does not own it', async () => {
    const tag = 'no-such-tag';
    const own = owner(tagKey(UPSTREAM, 'small', tag), urls)!;
    const other = urls.find((u) => u !== own)!;
    const before = await counter(other, 'ocimirror_peer_tags_total{result="peer"}');
    expect((await getManifest(other, 'small', tag)).status).toBe(404);
    expect(await counter(other, 'ocimirror_peer_tags_total{result="peer"}')).toBe(before + 1);
    expect(upstream.proxy.count({ pathIncludes: `/small/manifests/${tag}` })).toBe(1);
  });

  it('resolves a tag whose owner was killed against the upstream, through another replica', async () => {
    const [repo, tag] = ['small', 'v1'];
    const ownerUrl = owner(tagKey(UPSTREAM, repo, tag), urls)!;
    const other = urls.find((u) => u !== ownerUrl)!;
    const before = await counter(other, 'ocimirror_peer_tags_total{result="fallback"}');
    const victim = replicas[urls.indexOf(ownerUrl)]!;
    victim.kill('SIGKILL');
    await victim.exited;
    // Asked at once, before the other marks it down: the owner refuses the connection and the replica falls back.
    const fixture = upstream.fixtures.image(`${repo}:${tag}`).manifest;
    const answer = await getManifest(other, repo, tag);
    expect(answer.status).toBe(200);
    expect(answer.body.equals(fixture.bytes)).toBe(true);
    expect(upstream.proxy.count({ pathIncludes: `/${repo}/manifests/${tag}` })).toBe(1);
    expect(await counter(other, 'ocimirror_peer_tags_total{result="fallback"}')).toBe(before + 1);
  });
});
