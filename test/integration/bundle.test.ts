/**
 * `ocimirror export` / `import` end to end: a bundle exported from a mirror filled from the real
 * upstream is imported into a fresh data directory whose upstream cannot be reached, and a
 * mirror on it serves the images by their original names from the cache; skopeo reads what
 * export writes and import reads what skopeo writes; damaged, incomplete and differential
 * bundles; volumes; a hosted destination.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import type { RawConfig } from '../../src/config/schema.ts';
import { openCore, type MirrorCore } from '../../src/core.ts';
import { exportBundle } from '../../src/bundle/bundle-export.ts';
import { importBundle } from '../../src/bundle/bundle-import.ts';
import { BundleError } from '../../src/bundle/bundle-error.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { runCli, sharedHubConfig, startTestMirror } from '../helpers/mirror.ts';
import { skopeoCopy, localImageDigests } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { mountSmallDisk, unmountSmallDisk } from '../helpers/small-disk.ts';
import { writeTamperedBundle } from '../helpers/tampered-bundle.ts';

const SLOW = { timeout: 60_000 };
const CLOSED = 'http://127.0.0.1:1';

describeWithTools(['docker-registry', 'skopeo', 'umoci', 'zstd'], 'bundles: export and import of OCI image layouts', () => {
  let upstream: Upstream;
  let dir: string;
  let online: RawConfig;
  const dirs: string[] = [];

  /** A data directory and the config for it: `url` the upstream (CLOSED: unreachable). */
  const site = async (url: string): Promise<{ data: string; raw: RawConfig; file: string }> => {
    const data = await mkdtemp(path.join(dir, 'data-'));
    dirs.push(data);
    const raw = { ...sharedHubConfig(url), hosted: [{ name: 'registry.internal' }], storage: { path: data } } as RawConfig;
    const file = `${data}.yaml`;
    await writeFile(file, stringify(raw));
    return { data, raw, file };
  };
  const withCore = async <T>(raw: RawConfig, fn: (core: MirrorCore) => Promise<T>): Promise<T> => {
    const core = await openCore(parseConfig(raw, { env: {} }), silentLogger);
    try {
      return await fn(core);
    } finally {
      await core.close();
    }
  };
  const tarNames = (file: string) => execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n');

  let source: { data: string; raw: RawConfig; file: string };
  let full: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-bundle-'));
    source = await site(upstream.url);
    online = source.raw;
    full = path.join(dir, 'full.tar');
  }, 60_000);

  afterAll(async () => {
    await upstream?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('exports images named by their full names, fetching them first, as a standard OCI layout', SLOW, async () => {
    const run = await runCli(['export', '--config', source.file, '-o', full, 'registry.example/small:v1', 'registry.example/multi:latest', 'docker.io/library/alpine:3.19']);
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as { images: number; blobs: number; mibPerSecond: number };
    expect(summary.images).toBe(3);
    const names = tarNames(full);
    expect(names.slice(0, 2)).toEqual(['oci-layout', 'index.json']);
    expect(names.filter((n) => /^blobs\/sha256\/[a-f0-9]{64}$/.test(n)).length).toBe(new Set(names).size - 4);
    const index = JSON.parse(execFileSync('tar', ['-xOf', full, 'index.json'], { encoding: 'utf8' })) as { mediaType: string; manifests: Array<{ digest: string; annotations: Record<string, string> }> };
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name'])).toEqual(['registry.example/small:v1', 'registry.example/multi:latest', 'docker.io/library/alpine:3.19']);
    expect(index.manifests[0]?.annotations['io.containerd.image.name']).toBe('registry.example/small:v1');
    expect(index.manifests[0]?.digest).toBe(upstream.fixtures.image('small:v1').manifest.digest);
  });

  it('exports the images a sync file selects, resolving its semver range', SLOW, async () => {
    const syncFile = path.join(dir, 'sync.yaml');
    await writeFile(syncFile, stringify({ 'registry.example': { 'images-by-semver': { small: '>= 2.0.0' }, images: { medium: ['latest'] } } }));
    const out = path.join(dir, 'synced.tar');
    const run = await runCli(['export', '--config', source.file, '-o', out, '--sync', syncFile]);
    expect(run.code, run.stderr).toBe(0);
    const index = JSON.parse(execFileSync('tar', ['-xOf', out, 'index.json'], { encoding: 'utf8' })) as { manifests: Array<{ annotations: Record<string, string> }> };
    expect(index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name']).sort()).toEqual(['registry.example/medium:latest', 'registry.example/small:v2', 'registry.example/small:v3']);
  });

  it('is read by skopeo by the full name', SLOW, async () => {
    const out = path.join(dir, 'skopeo-read');
    await skopeoCopy(`oci-archive:${full}:registry.example/small:v1`, `dir:${out}`, { preserveDigests: true });
    const local = await localImageDigests(`dir:${out}`);
    expect(local.digest).toBe(upstream.fixtures.image('small:v1').manifest.digest);
  });

  it('is accepted by umoci as a layout', SLOW, async () => {
    const layout = path.join(dir, 'umoci-layout');
    execFileSync('mkdir', ['-p', layout]);
    execFileSync('tar', ['-xf', full, '-C', layout]);
    const listed = execFileSync('umoci', ['ls', '--layout', layout], { encoding: 'utf8' });
    expect(listed).toContain('registry.example/small:v1');
    const stat = execFileSync('umoci', ['stat', '--image', `${layout}:registry.example/small:v1`, '--json'], { encoding: 'utf8' });
    expect(JSON.parse(stat)).toHaveProperty('history');
  });

  it('imports into a site whose upstream is unreachable, and the mirror serves the images by their original names from the cache', SLOW, async () => {
    const offline = await site(CLOSED);
    const run = await runCli(['import', '--config', offline.file, full]);
    expect(run.code, run.stderr).toBe(0);
    const mirror = await startTestMirror(offline.raw, { dataDir: offline.data });
    try {
      for (const [name, ref] of [['registry.example/small', 'v1'], ['registry.example/multi', 'latest'], ['docker.io/library/alpine', '3.19']] as const) {
        const res = await fetch(`${mirror.url}/v2/${name}/manifests/${ref}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json' } });
        expect(res.status, name).toBe(200);
        expect(res.headers.get('x-cache')).toBe('HIT');
        const fixture = upstream.fixtures.image(`${name.replace(/^(registry\.example|docker\.io)\//, '')}:${ref}`).manifest;
        expect(Buffer.from(await res.arrayBuffer()).equals(fixture.bytes)).toBe(true);
      }
      const layer = upstream.fixtures.image('small:v1').manifest.layers[0]!;
      const blob = await fetch(`${mirror.url}/v2/registry.example/small/blobs/${layer.digest}`);
      expect(blob.status).toBe(200);
      expect(blob.headers.get('x-cache')).toBe('HIT');
      expect((await blob.arrayBuffer()).byteLength).toBe(layer.size);
      const child = upstream.fixtures.image('multi').manifest.children![1]!;
      const res = await fetch(`${mirror.url}/v2/registry.example/multi/manifests/${child.digest}`);
      expect(res.headers.get('x-cache')).toBe('HIT');
    } finally {
      await mirror.stop();
    }
  });

  it('refuses a bundle with a flipped byte in a layer, naming the digest, and makes nothing visible', SLOW, async () => {
    const layer = upstream.fixtures.image('small:v1').manifest.layers[0]!;
    const tampered = await writeTamperedBundle(full, layer.digest, path.join(dir, 'tampered.tar'));
    const offline = await site(CLOSED);
    const run = await runCli(['import', '--config', offline.file, tampered]);
    expect(run.code).toBe(5);
    expect(run.stderr).toContain(layer.digest);
    await withCore(offline.raw, async (core) => {
      expect(core.storage.metadata.getTag('shared', 'small', 'v1')).toBeUndefined();
      expect(core.storage.metadata.getTag('shared', 'library/alpine', '3.19')).toBeUndefined();
      expect(core.storage.metadata.getManifest(upstream.fixtures.image('small:v1').manifest.digest)).toBeUndefined();
    });
  });

  it('refuses a bundle that does not fit on the disk with a clear error, and makes nothing visible', SLOW, async () => {
    const disk = mountSmallDisk('6m', 'ocimirror-import-full-');
    if (!disk) {
      if (process.env.CI) throw new Error('this test needs root to mount a tmpfs');
      return;
    }
    try {
      const big = path.join(dir, 'large.tar');
      await withCore(online, (core) => exportBundle(core, ['registry.example/large:latest'], { output: big }));
      const raw = { ...sharedHubConfig(CLOSED), storage: { path: path.join(disk, 'data') } } as RawConfig;
      const err = await withCore(raw, (core) => importBundle(core, big)).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/disk is full/);
      await withCore(raw, async (core) => {
        expect(core.storage.metadata.getTag('shared', 'large', 'latest')).toBeUndefined();
        expect(core.storage.metadata.getManifest(upstream.fixtures.image('large').manifest.digest)).toBeUndefined();
      });
    } finally {
      unmountSmallDisk(disk);
    }
  });

  it('refuses an index.json naming a manifest the bundle does not hold', SLOW, async () => {
    const top = upstream.fixtures.image('small:v1').manifest.digest;
    const broken = path.join(dir, 'no-manifest.tar');
    const names = tarNames(full).filter((n) => n !== `blobs/sha256/${top.slice(7)}`);
    execFileSync('tar', ['--no-recursion', '-cf', broken, '-T', '-'], { cwd: path.join(dir, 'umoci-layout'), input: names.join('\n') });
    const offline = await site(CLOSED);
    const err = await withCore(offline.raw, (core) => importBundle(core, broken)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BundleError);
    expect((err as BundleError).message).toContain(top);
    await withCore(offline.raw, async (core) => expect(core.storage.metadata.getTag('shared', 'multi', 'latest')).toBeUndefined());
  });

  it('imports what skopeo writes: an oci-archive with a full name, and an oci: directory with a tag and --base-name', SLOW, async () => {
    const registry = upstream.registry.url.replace(/^https?:\/\//, '');
    const archive = path.join(dir, 'skopeo.tar');
    await skopeoCopy(`docker://${registry}/small:v2`, `oci-archive:${archive}:registry.example/small:v2`, { preserveDigests: true });
    const layout = path.join(dir, 'skopeo-oci');
    await skopeoCopy(`docker://${registry}/small:v3`, `oci:${layout}:v3`, { preserveDigests: true });
    const offline = await site(CLOSED);
    await withCore(offline.raw, async (core) => {
      const a = await importBundle(core, archive);
      expect(a.images.map((i) => i.name)).toEqual(['registry.example/small:v2']);
      await expect(importBundle(core, layout)).rejects.toThrow(/--base-name/);
      const b = await importBundle(core, layout, { baseName: 'registry.example/small' });
      expect(b.images.map((i) => i.name)).toEqual(['registry.example/small:v3']);
      expect(core.storage.metadata.getTag('shared', 'small', 'v2')?.digest).toBe(upstream.fixtures.image('small:v2').manifest.digest);
      expect(core.storage.metadata.getTag('shared', 'small', 'v3')?.digest).toBe(upstream.fixtures.image('small:v3').manifest.digest);
    });
  });

  it('writes a differential bundle with --since that carries fewer blobs and imports only after the earlier one', SLOW, async () => {
    const base = path.join(dir, 'base.tar');
    const diff = path.join(dir, 'diff.tar.gz');
    const images = ['registry.example/small:v1', 'registry.example/medium:latest'];
    await withCore(online, async (core) => {
      await exportBundle(core, images.slice(0, 1), { output: base });
      const d = await exportBundle(core, images, { output: diff, since: base });
      expect(d.images).toBe(2);
      expect(d.skippedBlobs).toBe(upstream.fixtures.allBlobs(upstream.fixtures.image('small:v1')).length);
      expect(d.blobs).toBe(upstream.fixtures.allBlobs(upstream.fixtures.image('medium')).length);
    });
    const offline = await site(CLOSED);
    await withCore(offline.raw, async (core) => {
      const err = await importBundle(core, diff).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BundleError);
      expect((err as BundleError).code).toBe('BUNDLE_INCOMPLETE');
      expect((err as BundleError).message).toContain(upstream.fixtures.image('small:v1').manifest.layers[0]!.digest);
      expect(core.storage.metadata.getTag('shared', 'medium', 'latest')).toBeUndefined();
      await importBundle(core, base);
      const done = await importBundle(core, diff);
      expect(done.images.map((i) => i.name)).toEqual(['registry.example/small:v1', 'registry.example/medium:latest']);
    });
  });

  it('splits into volumes with --max-size and reassembles them on import, refusing a damaged volume', SLOW, async () => {
    const out = path.join(dir, 'vol', 'bundle.tar.zst');
    const files = await withCore(online, async (core) => (await exportBundle(core, ['registry.example/many:latest'], { output: out, maxSize: 64 * 1024, compress: 'zstd' })).files);
    expect(files.length).toBeGreaterThan(2);
    expect((await readdir(path.dirname(out))).sort()).toContain('bundle.tar.zst.volumes.json');
    const offline = await site(CLOSED);
    await withCore(offline.raw, async (core) => {
      const second = files[1]!;
      const original = await readFile(second);
      const damaged = Buffer.from(original);
      damaged[100] = (damaged[100] as number) ^ 1;
      await writeFile(second, damaged);
      await expect(importBundle(core, files[0]!)).rejects.toThrow(/bundle\.tar\.zst\.001/);
      expect(core.storage.metadata.getTag('shared', 'many', 'latest')).toBeUndefined();
      await writeFile(second, original);
      const done = await importBundle(core, files[0]!);
      expect(done.images.map((i) => i.digest)).toEqual([upstream.fixtures.image('many').manifest.digest]);
    });
  });

  it('imports into a hosted repository under a prefix', SLOW, async () => {
    const offline = await site(CLOSED);
    await withCore(offline.raw, async (core) => {
      const done = await importBundle(core, full, { dest: 'registry.internal/mirror' });
      expect(done.images.map((i) => i.name)).toContain('registry.internal/mirror/small:v1');
      const got = core.hosted.content.getManifest('registry.internal', 'mirror/library/alpine', '3.19');
      expect(got.bytes.equals(upstream.fixtures.image('library/alpine:3.19').manifest.bytes)).toBe(true);
    });
  });
});
