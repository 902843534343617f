/**
 * @module test/integration/cluster-fill
 * One upstream fetch per blob cluster-wide, as operators run it: three `ocimirror serve`
 * replicas that know each other (static peers), all in front of one real upstream, behind a real
 * HAProxy balancing TCP connections round-robin. Clients asking any replica for a missing blob
 * cause one upstream GET for it: the replicas that do not own it read it from the one that does.
 * An owner killed mid-stream does not fail the clients reading through it: their streams continue
 * with the rest from the upstream (Range); with the owner killed, another replica serves the blob from the upstream itself.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { owner } from '../../src/cluster/rendezvous.ts';
import type { SpawnedMirror } from '../helpers/mirror.ts';
import { counter, startCluster, waitForMembersUp, type TestCluster } from '../helpers/cluster.ts';
import { waitFor } from '../helpers/wait.ts';
import { localImageDigests, skopeoCopy } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';


const sha256 = (buf: Buffer) => `sha256:${createHash('sha256').update(buf).digest('hex')}`;

describeWithTools(['docker-registry', 'haproxy', 'skopeo'], 'one upstream fetch per blob across the cluster', () => {
  let upstream: Upstream;
  let cluster: TestCluster | undefined;
  let front: string;
  let replicas: SpawnedMirror[] = [];
  let urls: string[] = [];
  /** The replicas not killed yet. */
  let live: string[] = [];

  beforeAll(async () => {
    upstream = await startUpstream();
    cluster = await startCluster(upstream.url, { name: 'cluster-fill' });
    ({ urls, replicas, front } = cluster);
    live = [...urls];
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    await upstream?.stop();
  });

  it('fetches a blob asked for by 12 clients through every replica from the upstream once', async () => {
    const layer = upstream.fixtures.image('large').manifest.layers[0]!;
    const bodies = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const res = await fetch(`http://${front}/v2/large/blobs/${layer.digest}`);
        expect(res.status).toBe(200);
        return Buffer.from(await res.arrayBuffer());
      }),
    );
    for (const body of bodies) {
      expect(body.length).toBe(layer.size);
      expect(sha256(body)).toBe(layer.digest);
    }
    expect(upstream.proxy.count({ method: 'GET', pathIncludes: layer.digest })).toBe(1);
    // The two replicas that do not own it read it from the one that does.
    const own = owner(layer.digest, urls)!;
    for (const url of urls.filter((u) => u !== own)) expect(await counter(url, 'ocimirror_peer_fills_total{result="peer"}')).toBeGreaterThanOrEqual(1);
    expect(await counter(own, 'ocimirror_peer_fills_total{result="peer"}')).toBe(0);
  });

  it('fetches each blob of an image copied by three skopeo clients through the replicas from the upstream once', async () => {
    const image = upstream.fixtures.image('medium').manifest;
    // One skopeo keeps its connection, so one replica; three at once are spread over all three.
    const dests = [0, 1, 2].map((i) => `oci:${path.join(cluster!.dir, `medium-oci-${i}`)}:latest`);
    await Promise.all(dests.map((dest) => skopeoCopy(`docker://${front}/medium:latest`, dest, { srcTlsVerify: false })));
    for (const dest of dests) {
      const local = await localImageDigests(dest);
      for (const blob of [image.config!, ...image.layers]) expect(local.blobs.get(blob.digest)).toBe(blob.size);
    }
    for (const blob of [image.config!, ...image.layers]) expect(upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(1);
  });

  it('continues a client\'s stream from the upstream when its blob owner dies mid-stream, and caches the blob verified', async () => {
    const layer = upstream.fixtures.image('many').manifest.layers[1]!;
    const ownerIndex = urls.indexOf(owner(layer.digest, urls)!);
    const other = urls[(ownerIndex + 1) % urls.length]!;
    // The owner's upstream fetch sends 2 KiB and then nothing, so the owner is killed with the stream open.
    upstream.proxy.stallAfter(2048, { pathIncludes: layer.digest, method: 'GET' });
    const res = await fetch(`${other}/v2/many/blobs/${layer.digest}`);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const chunks: Uint8Array[] = [];
    const first = await reader.read();
    expect(first.done).toBe(false);
    chunks.push(first.value!);
    upstream.proxy.clear();
    upstream.proxy.reset();
    const victim = replicas[ownerIndex]!;
    victim.kill('SIGKILL');
    await victim.exited;
    live.splice(live.indexOf(urls[ownerIndex]!), 1);
    for (let i = 0; i < 10_000; i++) {
      const next = await reader.read();
      if (next.done) break;
      chunks.push(next.value);
    }
    expect(sha256(Buffer.concat(chunks))).toBe(layer.digest);
    // The rest came from the upstream as a Range request starting where the owner's stream stopped.
    const resumed = upstream.proxy.records.filter((r) => r.method === 'GET' && r.path.includes(layer.digest));
    expect(resumed).toHaveLength(1);
    expect(resumed[0]).toMatchObject({ status: 206 });
    expect(resumed[0]!.bytesOut).toBeLessThan(layer.size);
    // Committed just after the client got its last byte.
    const again = await waitFor('the blob cached on the replica', async () => {
      const res = await fetch(`${other}/v2/many/blobs/${layer.digest}`);
      const body = Buffer.from(await res.arrayBuffer());
      return res.headers.get('x-cache') === 'HIT' ? body : undefined;
    }, 10_000, 50);
    expect(sha256(again)).toBe(layer.digest);
  });

  it('serves a blob whose owner was killed from the upstream, through another replica', async () => {
    // Once the survivors agree the first victim is down, ownership is over the two of them.
    for (const url of live) await waitForMembersUp(url, live.length);
    const layer = upstream.fixtures.image('many').manifest.layers[0]!;
    const ownerUrl = owner(layer.digest, live)!;
    const other = live.find((u) => u !== ownerUrl)!;
    const before = await counter(other, 'ocimirror_peer_fills_total{result="fallback"}');
    const victim = replicas[urls.indexOf(ownerUrl)]!;
    victim.kill('SIGKILL');
    await victim.exited;
    // Asked at once, before the other marks it down: the owner refuses the connection and the replica falls back.
    const res = await fetch(`${other}/v2/many/blobs/${layer.digest}`);
    expect(res.status).toBe(200);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(layer.digest);
    expect(upstream.proxy.count({ method: 'GET', pathIncludes: layer.digest })).toBe(1);
    expect(await counter(other, 'ocimirror_peer_fills_total{result="fallback"}')).toBe(before + 1);
  });
});
