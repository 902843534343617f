/**
 * @module test/integration/cluster-fill
 * One upstream fetch per blob cluster-wide, as operators run it: three `ocimirror serve`
 * replicas that know each other (static peers), all in front of one real upstream, behind a real
 * HAProxy balancing TCP connections round-robin. Clients asking any replica for a missing blob
 * cause one upstream GET for it: the replicas that do not own it read it from the one that does.
 * An owner killed mid-stream cuts the clients reading through it (nothing is cached, a retry
 * works); with the owner killed, another replica serves the blob from the upstream itself.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { owner } from '../../src/cluster/rendezvous.ts';
import { startHaproxy, type Haproxy } from '../helpers/haproxy.ts';
import { CLI_ARGS, mirrorConfig, spawnServe, type SpawnedMirror } from '../helpers/mirror.ts';
import { freePort } from '../helpers/ports.ts';
import { localImageDigests, skopeoCopy } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { waitFor } from '../helpers/wait.ts';

const SECRET = 'integration-cluster-fill-secret-0123456789-abcdef';
const ADMIN = 'integration-admin-token-0123';

const sha256 = (buf: Buffer) => `sha256:${createHash('sha256').update(buf).digest('hex')}`;

/** A counter's value in a Prometheus scrape (0 when the series is absent). */
async function counter(url: string, series: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describeWithTools(['docker-registry', 'haproxy', 'skopeo'], 'one upstream fetch per blob across the cluster', () => {
  let upstream: Upstream;
  let dir: string;
  let haproxy: Haproxy | undefined;
  let front: string;
  const replicas: SpawnedMirror[] = [];
  let urls: string[] = [];
  /** The replicas not killed yet. */
  let live: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-cluster-fill-'));
    upstream = await startUpstream();
    const ports = [await freePort(), await freePort(), await freePort()];
    urls = ports.map((p) => `http://127.0.0.1:${p}`);
    live = [...urls];
    await Promise.all(
      ports.map(async (port, i) => {
        const file = path.join(dir, `r${i}.yaml`);
        const config = {
          ...mirrorConfig(upstream.url),
          listen: `127.0.0.1:${port}`,
          storage: { path: path.join(dir, `r${i}`) },
          admin: { token: ADMIN },
          // failAfter 25 (5 s): a killed owner stays 'up' long enough that a request right after the kill
          // meets the refused connection (the fallback under test), however loaded the machine is.
          cluster: { self: urls[i], peers: urls, secretEnv: 'OCIMIRROR_CLUSTER_SECRET', healthInterval: '200ms', failAfter: 25 },
        };
        await writeFile(file, stringify(config));
        replicas[i] = await spawnServe([...CLI_ARGS, 'serve', '--config', file], { env: { OCIMIRROR_CLUSTER_SECRET: SECRET } });
      }),
    );
    const haproxyPort = await freePort();
    front = `127.0.0.1:${haproxyPort}`;
    haproxy = await startHaproxy(dir, ['listen mirrors', `  bind ${front}`, '  balance roundrobin', ...ports.map((p, i) => `  server r${i} 127.0.0.1:${p}`)], haproxyPort);
    // Ownership is computed over the members up: until every replica sees all three, they would disagree.
    for (const url of urls) {
      await waitFor(
        `${url} to see every replica up`,
        async () => {
          const res = await fetch(`${url}/admin/v1/cluster`, { headers: { authorization: `Bearer ${ADMIN}` } });
          const view = (await res.json()) as { counts: Record<string, number> };
          return view.counts.up === 3;
        },
        15_000,
        50,
      );
    }
  }, 60_000);

  afterAll(async () => {
    await haproxy?.stop();
    for (const r of replicas) {
      r.kill('SIGKILL');
      await r.exited;
    }
    await upstream?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
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
    const dests = [0, 1, 2].map((i) => `oci:${path.join(dir, `medium-oci-${i}`)}:latest`);
    await Promise.all(dests.map((dest) => skopeoCopy(`docker://${front}/medium:latest`, dest, { srcTlsVerify: false })));
    for (const dest of dests) {
      const local = await localImageDigests(dest);
      for (const blob of [image.config!, ...image.layers]) expect(local.blobs.get(blob.digest)).toBe(blob.size);
    }
    for (const blob of [image.config!, ...image.layers]) expect(upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(1);
  });

  it('cuts a client whose blob owner dies mid-stream, caches nothing, and serves the retry from the upstream', async () => {
    const layer = upstream.fixtures.image('many').manifest.layers[1]!;
    const ownerIndex = urls.indexOf(owner(layer.digest, urls)!);
    const other = urls[(ownerIndex + 1) % urls.length]!;
    // The owner's upstream fetch sends 2 KiB and then nothing, so the owner is killed with the stream open.
    upstream.proxy.stallAfter(2048, { pathIncludes: layer.digest });
    const res = await fetch(`${other}/v2/many/blobs/${layer.digest}`);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    expect((await reader.read()).done).toBe(false);
    const victim = replicas[ownerIndex]!;
    victim.kill('SIGKILL');
    await victim.exited;
    const rest = (async () => {
      for (let i = 0; i < 10_000; i++) if ((await reader.read()).done) return 'ended';
      return 'too many reads';
    })();
    await expect(rest).rejects.toThrow();
    upstream.proxy.clear();
    const retry = await fetch(`${other}/v2/many/blobs/${layer.digest}`);
    expect(retry.status).toBe(200);
    expect(sha256(Buffer.from(await retry.arrayBuffer()))).toBe(layer.digest);
    expect(upstream.proxy.count({ method: 'GET', pathIncludes: layer.digest })).toBe(2);
    live.splice(live.indexOf(urls[ownerIndex]!), 1);
  });

  it('serves a blob whose owner was killed from the upstream, through another replica', async () => {
    // Once the survivors agree the first victim is down, ownership is over the two of them.
    for (const url of live) {
      await waitFor(`${url} to see ${live.length} replicas up`, async () => {
        const res = await fetch(`${url}/admin/v1/cluster`, { headers: { authorization: `Bearer ${ADMIN}` } });
        return ((await res.json()) as { counts: Record<string, number> }).counts.up === live.length;
      }, 30_000, 50);
    }
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
