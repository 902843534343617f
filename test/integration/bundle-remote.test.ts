/**
 * `ocimirror export --url` / `import --url` against running mirrors: the bundle streams out of
 * one mirror over its admin API into a file skopeo reads, and from that file into another mirror
 * whose upstream is offline, which then serves the images as cache hits. A tampered bundle is
 * refused over HTTP as in-process; a missing token is exit code 4; an export cut midway leaves
 * no file behind.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RawConfig } from '../../src/config/schema.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { runCli, sharedHubConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { skopeoCopy, localImageDigests } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { writeTamperedBundle } from '../helpers/tampered-bundle.ts';

const SLOW = { timeout: 60_000 };
const TOKEN = 'bundle-remote-admin-token';
const IMAGES = ['registry.example/small:v1', 'registry.example/multi:latest'];
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json';

describeWithTools(['docker-registry', 'skopeo'], 'bundles over the admin API of a running mirror', () => {
  let upstream: Upstream;
  let dir: string;
  let source: TestMirror;
  let full: string;
  const env = { OCIMIRROR_ADMIN_TOKEN: TOKEN };

  /** A mirror whose only upstream is offline: what it serves, it has from an import. */
  const offlineMirror = () =>
    startTestMirror({
      listen: '127.0.0.1:0',
      upstreams: [{ name: 'shared', registries: ['docker.io', 'registry.example'], offline: true }],
      defaultUpstream: 'shared',
      prefetch: { onPull: false },
      admin: { token: TOKEN },
    } as RawConfig);

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-bundle-remote-'));
    source = await startTestMirror(sharedHubConfig(upstream.url, { admin: { token: TOKEN } } as Partial<RawConfig>));
    full = path.join(dir, 'remote.tar');
  }, 60_000);

  afterAll(async () => {
    await source?.stop();
    await upstream?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('exports two images from a running mirror into a tar skopeo reads, with the manifests byte for byte', SLOW, async () => {
    const run = await runCli(['export', '--url', source.url, '-o', full, ...IMAGES], env);
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as { images: number; files: string[]; tarBytes: number };
    expect(summary.images).toBe(2);
    expect(summary.files).toEqual([full]);
    expect(existsSync(`${full}.part`)).toBe(false);
    const names = execFileSync('tar', ['-tf', full], { encoding: 'utf8' }).trim().split('\n');
    expect(names.slice(0, 2)).toEqual(['oci-layout', 'index.json']);
    for (const [name, fixture] of [['registry.example/small:v1', 'small:v1'], ['registry.example/multi:latest', 'multi']] as const) {
      const out = path.join(dir, `skopeo-${fixture.replace(':', '-')}`);
      await skopeoCopy(`oci-archive:${full}:${name}`, `oci:${out}:x`, { preserveDigests: true, all: true });
      const local = await localImageDigests(`oci:${out}:x`);
      expect(local.digest).toBe(upstream.fixtures.image(fixture).manifest.digest);
      const top = upstream.fixtures.image(fixture).manifest;
      expect((await readFile(path.join(out, 'blobs', 'sha256', top.digest.slice(7)))).equals(top.bytes)).toBe(true);
    }
  });

  it('writes a gzip bundle cut into volumes on the CLI side', SLOW, async () => {
    const out = path.join(dir, 'vol', 'remote.tar.gz');
    const run = await runCli(['export', '--url', source.url, '-o', out, '--max-size', '4KiB', IMAGES[0] as string], env);
    expect(run.code, run.stderr).toBe(0);
    const names = await readdir(path.dirname(out));
    expect(names).toContain('remote.tar.gz.volumes.json');
    expect(names.filter((n) => /\.\d{3}$/.test(n)).length).toBeGreaterThan(1);
    const offline = await offlineMirror();
    try {
      const imported = await runCli(['import', '--url', offline.url, `${out}.000`], env);
      expect(imported.code, imported.stderr).toBe(0);
      const res = await fetch(`${offline.url}/v2/registry.example/small/manifests/v1`, { headers: { accept: ACCEPT } });
      expect(res.status).toBe(200);
    } finally {
      await offline.stop();
    }
  });

  it('imports the tar into a running mirror whose upstream is offline, which then serves the images by their names as hits', SLOW, async () => {
    const offline = await offlineMirror();
    try {
      const run = await runCli(['import', '--url', offline.url, full], env);
      expect(run.code, run.stderr).toBe(0);
      const summary = JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as { images: Array<{ name: string }> };
      expect(summary.images.map((i) => i.name)).toEqual(IMAGES);
      for (const [name, ref, fixture] of [['registry.example/small', 'v1', 'small:v1'], ['registry.example/multi', 'latest', 'multi']] as const) {
        const res = await fetch(`${offline.url}/v2/${name}/manifests/${ref}`, { headers: { accept: ACCEPT } });
        expect(res.status, name).toBe(200);
        expect(res.headers.get('x-cache')).toBe('HIT');
        expect(Buffer.from(await res.arrayBuffer()).equals(upstream.fixtures.image(fixture).manifest.bytes)).toBe(true);
      }
      const layer = upstream.fixtures.image('small:v1').manifest.layers[0]!;
      const blob = await fetch(`${offline.url}/v2/registry.example/small/blobs/${layer.digest}`);
      expect(blob.status).toBe(200);
      expect(blob.headers.get('x-cache')).toBe('HIT');
      expect((await blob.arrayBuffer()).byteLength).toBe(layer.size);
    } finally {
      await offline.stop();
    }
  });

  it('refuses a tampered tar sent over --url, naming the digest, and makes nothing visible', SLOW, async () => {
    const layer = upstream.fixtures.image('small:v1').manifest.layers[0]!;
    const tampered = await writeTamperedBundle(full, layer.digest, path.join(dir, 'tampered.tar'));
    const offline = await offlineMirror();
    try {
      const run = await runCli(['import', '--url', offline.url, tampered], env);
      expect(run.code).toBe(5);
      expect(run.stderr).toContain(layer.digest);
      for (const [name, ref] of [['registry.example/small', 'v1'], ['registry.example/multi', 'latest']] as const) {
        const res = await fetch(`${offline.url}/v2/${name}/manifests/${ref}`, { headers: { accept: ACCEPT } });
        // Not cached, and the offline upstream cannot be asked: 503, never the tampered image.
        expect(res.status, name).toBe(503);
      }
      const storage = offline.mirror.storage.metadata;
      expect(storage.getManifest(upstream.fixtures.image('small:v1').manifest.digest)).toBeUndefined();
      expect(storage.getTag('shared', 'multi', 'latest')).toBeUndefined();
    } finally {
      await offline.stop();
    }
  });

  it('exits with code 4 and writes nothing when export --url or import --url has no admin token', SLOW, async () => {
    const out = path.join(dir, 'no-token.tar');
    const run = await runCli(['export', '--url', source.url, '-o', out, IMAGES[0] as string]);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toMatch(/token/);
    expect(existsSync(out) || existsSync(`${out}.part`)).toBe(false);
    const imported = await runCli(['import', '--url', source.url, full]);
    expect(imported.code, imported.stderr).toBe(4);
  });

  it('imports a layout directory over --url, packed into a tar on the CLI side, under --base-name', SLOW, async () => {
    const registry = upstream.registry.url.replace(/^https?:\/\//, '');
    const layout = path.join(dir, 'skopeo-oci');
    await skopeoCopy(`docker://${registry}/small:v3`, `oci:${layout}:v3`, { preserveDigests: true });
    const offline = await offlineMirror();
    try {
      const run = await runCli(['import', '--url', offline.url, '--base-name', 'registry.example/small', layout], env);
      expect(run.code, run.stderr).toBe(0);
      const res = await fetch(`${offline.url}/v2/registry.example/small/manifests/v3`, { headers: { accept: ACCEPT } });
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(upstream.fixtures.image('small:v3').manifest.digest);
    } finally {
      await offline.stop();
    }
  });

  it('refuses at once, before reading it, a body larger than the free space of the mirror\'s disk', SLOW, async () => {
    let sent = 0;
    const chunk = Buffer.alloc(1 << 20);
    const body = Readable.from((async function* () {
      for (let i = 0; i < 512; i++) {
        sent += chunk.length;
        yield chunk;
      }
    })());
    const res = await request(`${source.url}/admin/v1/import`, { method: 'POST', body, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/x-tar', 'content-length': String(2 ** 50) } });
    const text = await res.body.text();
    expect(res.statusCode).toBe(503);
    expect(text).toMatch(/free/);
    expect(sent).toBeLessThan(512 << 20);
  });

  it('leaves no output when the connection to the mirror is cut in the middle of the tar', SLOW, async () => {
    let proxy: FaultProxy | undefined;
    try {
      proxy = await startFaultProxy(source.url);
      proxy.cutAfter(3000, { pathIncludes: '/admin/v1/export' });
      const out = path.join(dir, 'cut', 'cut.tar');
      const run = await runCli(['export', '--url', proxy.url, '-o', out, ...IMAGES], env);
      expect(run.code).toBe(3);
      expect(run.stderr).toMatch(/incomplete/);
      const left = existsSync(path.dirname(out)) ? await readdir(path.dirname(out)) : [];
      expect(left).toEqual([]);
      expect(proxy.count({ pathIncludes: '/admin/v1/export' })).toBe(1);
    } finally {
      await proxy?.stop();
    }
  });

});
