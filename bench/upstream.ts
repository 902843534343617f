/**
 * @module bench/upstream
 * The real upstream: docker-registry loaded with the fixture images. Every mirror and the direct baseline talk to it
 * straight, and requests and bytes are counted from its own access log (bench/access-log.ts), the same way for each.
 * The herd blob is a second large layer (another seed) that no other phase reads.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { makeFixtures, type BlobDesc, type FixtureImage, type FixtureSet } from '../test/helpers/images.ts';
import { pushFixtures } from '../test/helpers/push.ts';
import { startRegistry, type RegistryServer } from '../test/helpers/registry-server.ts';
import { UpstreamLog } from './access-log.ts';
import type { Cleanup } from './proc.ts';

/** What every pull phase copies: one tag per fixture repository. */
export const PULL_SET = ['small:latest', 'medium:latest', 'large:latest', 'many:latest', 'multi:latest', 'library/alpine:latest'];

export interface BenchUpstream {
  registry: RegistryServer;
  /** The upstream's access log: what each phase asked of it. */
  log: UpstreamLog;
  fixtures: FixtureSet;
  /** The pull set's distinct content (manifests, configs, layers of every platform), bytes. */
  contentBytes: number;
  large: BlobDesc;
  herd: BlobDesc & { repo: string };
}

/** Distinct bytes a client copying `images` with `--all` must receive at least once. */
function contentOf(images: FixtureImage[], fixtures: FixtureSet): number {
  const sizes = new Map<string, number>();
  for (const image of images) {
    for (const m of [image.manifest, ...(image.manifest.children ?? [])]) sizes.set(m.digest, m.size);
    for (const b of fixtures.allBlobs(image)) sizes.set(b.digest, b.size);
  }
  return [...sizes.values()].reduce((a, b) => a + b, 0);
}

export async function startUpstream(largeMiB: number, cleanup: Cleanup): Promise<BenchUpstream> {
  const largeBytes = largeMiB * 1024 * 1024;
  const starting = startRegistry();
  cleanup.defer('upstream registry', async () => (await starting).stop());
  const [fixtures, herdSet, registry] = await Promise.all([
    makeFixtures({ largeBytes }),
    makeFixtures({ largeBytes, seed: 'ocimirror-bench-herd' }),
    starting,
  ]);
  const herdImage: FixtureImage = { ...herdSet.image('large'), repo: 'herd', tags: ['latest'] };
  await pushFixtures(registry.url, fixtures);
  await pushFixtures(registry.url, herdSet, [herdImage]);
  const large = fixtures.image('large').manifest.layers[0]!;
  const herd = herdImage.manifest.layers[0]!;
  return {
    registry,
    log: new UpstreamLog(registry),
    fixtures,
    contentBytes: contentOf(PULL_SET.map((ref) => fixtures.image(ref)), fixtures),
    large,
    herd: { ...herd, repo: herdImage.repo },
  };
}

/**
 * Waits (at most 10 s) until the upstream has logged nothing new for 1 s: a mirror may finish a fetch after its
 * client is served. A response is logged when it ends, so the window is longer than between a forwarder's bytes.
 */
export async function settled(upstream: UpstreamLog): Promise<void> {
  let last = -1;
  let quiet = 0;
  for (let i = 0; i < 40 && quiet < 4; i++) {
    const now = upstream.records().length;
    quiet = now === last ? quiet + 1 : 0;
    last = now;
    await sleep(250);
  }
}
