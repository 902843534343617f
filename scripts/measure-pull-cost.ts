/**
 * What pulls of an image with one large layer cost the upstream: a cold pull, a warm pull and N
 * concurrent cold pulls (each a fresh mirror), counted by a forwarder in front of a real
 * docker-registry. Each pull is what containerd does: manifest by tag, config and layers by digest.
 *   node --import tsx scripts/measure-pull-cost.ts [layerMiB=512] [concurrent=16]
 */
import { createHash } from 'node:crypto';
import { request } from 'undici';
import { startUpstream } from '../test/helpers/upstream.ts';
import { MANIFEST_ACCEPT } from '../test/helpers/images.ts';
import { mirrorConfig, startTestMirror } from '../test/helpers/mirror.ts';

const layerMiB = Number(process.argv[2] ?? 512);
const concurrent = Number(process.argv[3] ?? 16);
const upstream = await startUpstream({ largeBytes: layerMiB << 20 });
const image = upstream.fixtures.image('large');

async function pull(base: string): Promise<void> {
  const m = await request(`${base}/v2/large/manifests/latest`, { headers: { accept: MANIFEST_ACCEPT } });
  await m.body.arrayBuffer();
  for (const blob of upstream.fixtures.allBlobs(image)) {
    const res = await request(`${base}/v2/large/blobs/${blob.digest}`);
    const hash = createHash('sha256');
    for await (const chunk of res.body) hash.update(chunk as Buffer);
    if (`sha256:${hash.digest('hex')}` !== blob.digest) throw new Error(`wrong bytes for ${blob.digest}`);
  }
}

function cost(label: string, ms: number) {
  const r = upstream.proxy.records;
  const gets = r.filter((x) => x.method === 'GET' && x.path.includes('/blobs/')).length;
  console.log(`${label}: ${r.length} upstream requests (${gets} blob GETs), ${(upstream.proxy.bytes() / 2 ** 20).toFixed(1)} MiB from upstream, ${ms} ms`);
  upstream.proxy.reset();
}

const total = upstream.fixtures.allBlobs(image).reduce((n, b) => n + b.size, 0) + image.manifest.size;
console.log(`image large:latest: ${(total / 2 ** 20).toFixed(1)} MiB in ${upstream.fixtures.allBlobs(image).length} blobs`);
try {
  let m = await startTestMirror(mirrorConfig(upstream.url));
  upstream.proxy.reset();
  let t = Date.now();
  await pull(m.url);
  cost('cold pull', Date.now() - t);
  await new Promise((r) => setTimeout(r, 500));
  t = Date.now();
  await pull(m.url);
  cost('warm pull', Date.now() - t);
  await m.stop();

  m = await startTestMirror(mirrorConfig(upstream.url));
  upstream.proxy.reset();
  t = Date.now();
  await Promise.all(Array.from({ length: concurrent }, () => pull(m.url)));
  cost(`${concurrent} concurrent cold pulls`, Date.now() - t);
  await m.stop();
} finally {
  await upstream.stop();
}
