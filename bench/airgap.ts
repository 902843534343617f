/**
 * @module bench/airgap
 * Phases 8–10, the air-gapped features against the tools a site would otherwise use: a push of the large
 * image into a hosted registry (against a plain docker-registry), `ocimirror sync` of the pull set into an
 * empty cache (against `skopeo sync` into a directory, then a second sync of the unchanged list), and
 * `ocimirror export` / `import` of that set (against `skopeo copy` of each image into an oci-archive).
 * Every ocimirror command is the real CLI (dist/ocimirror.mjs) as its own process, timed spawn to exit
 * as skopeo is. Each side runs in alternating rounds on fresh destinations; the median round counts.
 */
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startRegistry } from '../test/helpers/registry-server.ts';
import { medianBy } from './median.ts';
import { ocimirrorCli, startOcimirror, writeOcimirrorConfig } from './ocimirror.ts';
import { log, mustRun, type Cleanup } from './proc.ts';
import { settled, type BenchUpstream } from './upstream.ts';

/** The hosted registry the push phase pushes into. */
export const HOSTED_REGISTRY = 'registry.internal';
const MiB = 2 ** 20;

export interface AirgapOptions {
  up: BenchUpstream;
  images: string[];
  workDir: string;
  rounds: { push: number; sync: number };
  timeoutMs: number;
  nodeArgs: string[];
}

/** One side of a ratio: the median round's wall, and every round's. */
export interface Timed {
  wallS: number;
  rounds: number[];
}

export interface PushResult {
  /** Manifest, config and layers of the pushed image. */
  imageBytes: number;
  ocimirror: Timed;
  registry: Timed;
}

export interface SyncResult {
  images: number;
  /** What the first ocimirror sync fetched from the upstream (median round). */
  ocimirror: Timed & { upstreamRequests: number; upstreamBytes: number };
  skopeo: Timed;
  /** The second `ocimirror sync` of the unchanged list, on the last round's data directory. */
  again: { wallS: number; upstreamRequests: number; upstreamBlobGets: number; tags: number };
}

export interface BundleResult {
  /** The bundle tar's size: the numerator of every MiB/s here, skopeo's included (same content). */
  bundleBytes: number;
  /** What skopeo's archives add up to, for comparison (each image its own tar). */
  skopeoArchiveBytes: number;
  export: Timed & { mibPerS: number };
  import: Timed & { mibPerS: number };
  skopeo: Timed & { mibPerS: number };
}

const wallS = (ms: number) => ms / 1000;
const timed = (rounds: number[]): Timed => ({ wallS: medianBy(rounds, (w) => w), rounds });
/** A side's rounds in the order run: side A first in odd rounds, side B first in even ones. */
const orderOf = (r: number): readonly (0 | 1)[] => (r % 2 === 1 ? [0, 1] : [1, 0]);

async function ocimirror(args: string[], o: AirgapOptions): Promise<{ ms: number; stdout: string }> {
  const [cmd, argv] = ocimirrorCli(args, o.nodeArgs);
  const r = await mustRun(cmd, argv, { timeoutMs: o.timeoutMs });
  return { ms: r.ms, stdout: r.stdout };
}

const skopeo = (args: string[], o: AirgapOptions) => mustRun('skopeo', ['--insecure-policy', ...args], { timeoutMs: o.timeoutMs });

/**
 * 8: `skopeo copy` of the large image from the upstream into a fresh hosted registry of a fresh ocimirror,
 * and into a fresh docker-registry (no proxy), alternately; every destination is stopped and removed after its round.
 */
export async function pushPhase(o: AirgapOptions, cleanup: Cleanup): Promise<PushResult> {
  const large = o.up.fixtures.image('large');
  const imageBytes = large.manifest.size + o.up.fixtures.allBlobs(large).reduce((n, b) => n + b.size, 0);
  const copy = (host: string, repo: string) => skopeo(['copy', '--src-tls-verify=false', '--dest-tls-verify=false', '--retry-times', '0',
    `docker://${o.up.registry.host}/large:latest`, `docker://${host}/${repo}:latest`], o);
  const sides = [
    async (r: number) => {
      const m = await startOcimirror({ name: `push-ocimirror${r}`, upstreamUrl: o.up.registry.url, dataDir: join(o.workDir, `push-ocimirror${r}-data`), workDir: o.workDir, nodeArgs: o.nodeArgs, hosted: [{ name: HOSTED_REGISTRY }] }, cleanup);
      try {
        log(`push: ocimirror hosted (${r}/${o.rounds.push})`);
        const ms = (await copy(m.host, `${HOSTED_REGISTRY}/bench/large`)).ms;
        // The push must have landed: the tag answers with the source's digest.
        const res = await fetch(`${m.url}/v2/${HOSTED_REGISTRY}/bench/large/manifests/latest`, { method: 'HEAD', headers: { Accept: large.manifest.mediaType } });
        if (res.status !== 200 || res.headers.get('docker-content-digest') !== large.manifest.digest) {
          throw new Error(`push: the hosted tag answers ${res.status} ${res.headers.get('docker-content-digest')}, expected ${large.manifest.digest}`);
        }
        return ms;
      } finally {
        await m.daemon.stop();
        await rm(m.dataDir, { recursive: true, force: true });
      }
    },
    async (r: number) => {
      const starting = startRegistry();
      cleanup.defer(`push registry ${r}`, async () => (await starting).stop());
      const reg = await starting;
      try {
        log(`push: docker-registry (${r}/${o.rounds.push})`);
        return (await copy(reg.host, 'bench/large')).ms;
      } finally {
        await reg.stop();
      }
    },
  ] as const;
  const walls: [number[], number[]] = [[], []];
  for (let r = 1; r <= o.rounds.push; r++) for (const side of orderOf(r)) walls[side].push(wallS(await sides[side](r)));
  return { imageBytes, ocimirror: timed(walls[0]), registry: timed(walls[1]) };
}

/** The pull set as a skopeo-sync YAML file on the upstream's host:port: plain HTTP, every tag named. */
async function writeSyncFile(o: AirgapOptions): Promise<string> {
  const images: Record<string, string[]> = {};
  for (const ref of o.images) {
    const i = ref.lastIndexOf(':');
    (images[ref.slice(0, i)] ??= []).push(ref.slice(i + 1));
  }
  const file = join(o.workDir, 'sync-set.yaml');
  // JSON is YAML; nothing but skopeo's own keys, so both tools read the same file.
  await writeFile(file, JSON.stringify({ [o.up.registry.host]: { images, 'tls-verify': false } }, null, 2));
  return file;
}

/** A config for the CLI on `dataDir` whose upstream serves the upstream's host:port, at `url`. */
const cliConfig = (name: string, url: string, o: AirgapOptions) =>
  writeOcimirrorConfig({ name, upstreamUrl: url, dataDir: join(o.workDir, `${name}-data`), workDir: o.workDir, registries: [o.up.registry.host] });

/**
 * 9: `ocimirror sync` into an empty data directory against `skopeo sync --all` into an empty directory,
 * alternately; then a second `ocimirror sync` of the same file on the last round's data directory, which
 * must cost one conditional request per tag and no blob. Returns that data directory's config for phase 10.
 */
export async function syncPhase(o: AirgapOptions): Promise<{ result: SyncResult; config: string }> {
  const file = await writeSyncFile(o);
  const upstream = o.up.log;
  const om: { ms: number; requests: number; bytes: number }[] = [];
  const sk: number[] = [];
  let config = '';
  for (let r = 1; r <= o.rounds.sync; r++) {
    for (const side of orderOf(r)) {
      if (side === 0) {
        if (config) await rm(join(o.workDir, `sync${r - 1}-data`), { recursive: true, force: true });
        config = await cliConfig(`sync${r}`, o.up.registry.url, o);
        log(`sync: ocimirror sync (${r}/${o.rounds.sync})`);
        await settled(upstream);
        upstream.reset();
        const { ms } = await ocimirror(['sync', file, '--config', config], o);
        await settled(upstream);
        om.push({ ms, requests: upstream.count(), bytes: upstream.bytes() });
      } else {
        const dest = join(o.workDir, `skopeo-sync${r}`);
        log(`sync: skopeo sync (${r}/${o.rounds.sync})`);
        try {
          sk.push(wallS((await skopeo(['sync', '--all', '--src', 'yaml', '--dest', 'dir', '--retry-times', '0', file, dest], o)).ms));
        } finally {
          await rm(dest, { recursive: true, force: true });
        }
      }
    }
  }
  const median = medianBy(om, (x) => x.ms);
  log('sync: ocimirror sync again, unchanged list');
  upstream.reset();
  const again = await ocimirror(['sync', file, '--config', config], o);
  await settled(upstream);
  return {
    config,
    result: {
      images: o.images.length,
      ocimirror: { ...timed(om.map((x) => wallS(x.ms))), upstreamRequests: median.requests, upstreamBytes: median.bytes },
      skopeo: timed(sk),
      again: { wallS: wallS(again.ms), upstreamRequests: upstream.count(), upstreamBlobGets: upstream.count({ method: 'GET', pathIncludes: '/blobs/' }), tags: o.images.length },
    },
  };
}

/**
 * 10: `ocimirror export` of the set from the synced data directory to one tar, and `ocimirror import` of that
 * tar into an empty data directory whose upstream is unreachable, against `skopeo copy --all` of each image
 * from the upstream into an oci-archive: the three alternate by round, each writing afresh.
 */
export async function bundlePhase(o: AirgapOptions, syncConfig: string): Promise<BundleResult> {
  const names = o.images.map((ref) => `${o.up.registry.host}/${ref}`);
  const bundle = join(o.workDir, 'bench-bundle.tar');
  const [ex, im, sk]: [number[], number[], number[]] = [[], [], []];
  let bundleBytes = 0;
  let skopeoArchiveBytes = 0;
  const steps = [
    async (r: number) => {
      log(`bundle: ocimirror export (${r}/${o.rounds.sync})`);
      await rm(bundle, { force: true });
      ex.push(wallS((await ocimirror(['export', '-o', bundle, '--config', syncConfig, ...names], o)).ms));
      bundleBytes = (await stat(bundle)).size;
    },
    async (r: number) => {
      log(`bundle: ocimirror import (${r}/${o.rounds.sync})`);
      const config = await cliConfig(`import${r}`, 'http://127.0.0.1:1', o);
      try {
        const { ms, stdout } = await ocimirror(['import', bundle, '--config', config], o);
        const summary = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { images?: unknown[] };
        if (summary.images?.length !== o.images.length) throw new Error(`import: ${summary.images?.length} images imported, expected ${o.images.length}: ${stdout.slice(-2000)}`);
        im.push(wallS(ms));
      } finally {
        await rm(join(o.workDir, `import${r}-data`), { recursive: true, force: true });
      }
    },
    async (r: number) => {
      log(`bundle: skopeo copy to oci-archive (${r}/${o.rounds.sync})`);
      const dir = join(o.workDir, `skopeo-archives${r}`);
      let ms = 0;
      skopeoArchiveBytes = 0;
      try {
        await mkdir(dir, { recursive: true });
        for (const [i, ref] of o.images.entries()) {
          const archive = join(dir, `${i}.tar`);
          ms += (await skopeo(['copy', '--all', '--src-tls-verify=false', '--retry-times', '0', `docker://${o.up.registry.host}/${ref}`, `oci-archive:${archive}:${ref}`], o)).ms;
          skopeoArchiveBytes += (await stat(archive)).size;
        }
        sk.push(wallS(ms));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  ];
  // The import needs an export before it; skopeo runs first in even rounds.
  for (let r = 1; r <= o.rounds.sync; r++) for (const s of r % 2 === 1 ? [0, 1, 2] : [2, 0, 1]) await steps[s]!(r);
  await rm(bundle, { force: true });
  const rate = (walls: number[]) => ({ ...timed(walls), mibPerS: bundleBytes / MiB / medianBy(walls, (w) => w) });
  return { bundleBytes, skopeoArchiveBytes, export: rate(ex), import: rate(im), skopeo: rate(sk) };
}
