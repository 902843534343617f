/**
 * The mirror as operators run it, a child process of `ocimirror serve`: killed with
 * SIGKILL in the middle of a fill (the cache must come back consistent and refetch the blob
 * whole), drained with SIGTERM during a pull (readiness 503, the pull finishes, exit 0), and
 * refusing a bad config with a message that names the key.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, it, onTestFinished } from 'vitest';
import { Metadata } from '../../src/cache/metadata/metadata.ts';
import { dataPaths } from '../../src/cache/paths.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { CLI_ARGS, PROJECT_ROOT, mirrorConfig, spawnMirror, spawnServe } from '../helpers/mirror.ts';
import { sleep, waitFor } from '../helpers/wait.ts';


/** Streams a GET, hashing it; `firstBytes` resolves once `after` bytes arrived. */
function streamGet(url: string, after = 1) {
  let onFirst: () => void;
  const firstBytes = new Promise<void>((r) => (onFirst = r));
  const done = new Promise<{ status: number; bytes: number; digest: string; complete: boolean }>((resolve, reject) => {
    http.get(url, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
        if (bytes >= after) onFirst();
      });
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        resolve({ status: res.statusCode ?? 0, bytes, digest: `sha256:${hash.digest('hex')}`, complete: res.complete });
      };
      res.on('end', finish);
      res.on('error', finish);
      res.on('aborted', finish);
    }).on('error', reject);
  });
  return { firstBytes, done };
}

describeWithTools(['docker-registry'], 'the mirror process', () => {
  let upstream: Upstream;
  let dir: string;

  beforeAll(async () => {
    upstream = await startUpstream();
  });
  afterAll(async () => {
    await upstream?.stop();
  });
  beforeEach(async () => {
    upstream.proxy.clear();
    upstream.proxy.reset();
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-proc-'));
    return () => rm(dir, { recursive: true, force: true });
  });

  it('comes back consistent after SIGKILL mid-fill and refetches the blob whole', async () => {
    const dataDir = path.join(dir, 'data');
    const blob = upstream.fixtures.image('large').manifest.layers[0]!;
    upstream.proxy.throttle(2 << 20, { pathIncludes: blob.digest });
    const first = await spawnMirror(mirrorConfig(upstream.url), dataDir);
    try {
      const pull = streamGet(`${first.url}/v2/large/blobs/${blob.digest}`, 256 << 10);
      await pull.firstBytes;
      const tmp = dataPaths(dataDir).tmp;
      expect((await readdir(tmp)).some((f) => f.endsWith('.part'))).toBe(true);
      first.kill('SIGKILL');
      expect(await first.exited).toBe('SIGKILL');
      const cut = await pull.done;
      expect(cut, JSON.stringify(cut)).toMatchObject({ complete: false });
      expect(cut.bytes).toBeLessThan(blob.size);
    } finally {
      first.kill('SIGKILL');
    }

    upstream.proxy.clear();
    const second = await spawnMirror(mirrorConfig(upstream.url), dataDir);
    try {
      const ready = JSON.parse(second.output().split('\n').find((l) => l.includes('"storage ready"')) ?? '{}');
      expect(ready, second.output()).toMatchObject({ tempFilesRemoved: 1, blobs: 0 });
      expect(await readdir(dataPaths(dataDir).tmp)).toEqual([]);
      const before = upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest });
      const again = await streamGet(`${second.url}/v2/large/blobs/${blob.digest}`).done;
      expect(again).toMatchObject({ status: 200, bytes: blob.size, digest: blob.digest, complete: true });
      expect(upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(before + 1);
      const refetch = upstream.proxy.records.filter((r) => r.path.includes(blob.digest)).at(-1)!;
      expect(refetch.bytesOut).toBe(blob.size);
    } finally {
      second.kill('SIGTERM');
      await second.exited;
    }
    const metadata = new Metadata(dataPaths(dataDir).database);
    try {
      expect(metadata.getBlob(blob.digest)?.size).toBe(blob.size);
    } finally {
      metadata.close();
    }
  });

  it('runs as the built bundle: finds the shipped config and the sendfile addon from the package root, keeps WebAssembly on Liftoff, serves a pull, and gc --offline sees it', async () => {
    // Built one level below the project root, as dist/ocimirror.mjs is (and git-ignored like it).
    const outDir = path.join(PROJECT_ROOT, `.tmp-bundle-${process.pid}`);
    const bundle = path.join(outDir, 'ocimirror.mjs');
    onTestFinished(() => rm(outDir, { recursive: true, force: true }));
    const built = spawnSync(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'scripts/build.ts'), bundle], { cwd: PROJECT_ROOT, encoding: 'utf8' });
    expect(built.status, built.stderr).toBe(0);
    // No --config and no --data, from a directory without config/: the shipped config/ocimirror.yaml
    // must be the one read, its storage.path ./data resolved against the working directory.
    // --trace-wasm-compilation-times: V8 logs each WebAssembly function it compiles and with which compiler.
    const mirror = await spawnServe(['--max-semi-space-size=8', '--trace-wasm-compilation-times', bundle, 'serve', '--listen', '127.0.0.1:0', '--upstream', upstream.url], { cwd: dir, env: {} });
    try {
      const ready = JSON.parse(mirror.output().split('\n').find((l) => l.includes('"storage ready"')) ?? '{}');
      expect(ready.path, mirror.output()).toBe(path.join(dir, 'data'));
      const addonBuilt = existsSync(path.join(PROJECT_ROOT, 'native/sendfile/build/Release/sendfile.node'));
      expect(mirror.output().includes('copied through buffers instead of sendfile'), mirror.output()).toBe(!addonBuilt);
      expect(mirror.output().includes('fills hash on the event loop'), mirror.output()).toBe(!addonBuilt);
      // Tag lists come from the upstream through undici (and cache no blob, which gc counts below):
      // without --liftoff-only, V8 recompiles undici's parser with TurboFan after its second response
      // (measured), finishing while the blob below is pulled.
      for (const repo of ['small', 'medium', 'large']) {
        const res = await fetch(`${mirror.url}/v2/${repo}/tags/list`);
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      }
      const blob = upstream.fixtures.image('medium').manifest.layers[0]!;
      const pulled = await streamGet(`${mirror.url}/v2/medium/blobs/${blob.digest}`).done;
      expect(pulled).toMatchObject({ status: 200, bytes: blob.size, digest: blob.digest, complete: true });
      const committed = dataPaths(path.join(dir, 'data')).blobFile(blob.digest.slice('sha256:'.length));
      await waitFor('the blob committed under ./data', async () => existsSync(committed) || undefined);
    } finally {
      mirror.kill('SIGTERM');
    }
    expect(await mirror.exited).toBe(0);
    expect(mirror.output()).toContain('using Liftoff');
    expect(mirror.output()).not.toContain('using TurboFan');
    // Another command of the same bundle, on the same default config: an offline gc finds the blob.
    const gc = spawnSync(process.execPath, [bundle, 'gc', '--offline'], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(gc.status, gc.stderr).toBe(0);
    expect(JSON.parse(gc.stdout)).toMatchObject({ reconciled: { blobs: 1, rowsWithoutFile: 0, filesWithoutRow: 0 } });
  });

  it('drains on SIGTERM: readiness turns 503, the pull in flight finishes, then it exits 0', async () => {
    const dataDir = path.join(dir, 'data');
    const blob = upstream.fixtures.image('medium').manifest.layers[1]!;
    upstream.proxy.throttle(blob.size, { pathIncludes: blob.digest }); // about a second for the whole blob
    const mirror = await spawnMirror(mirrorConfig(upstream.url, { server: { shutdownGrace: '20s', drainDelay: '1s' } }), dataDir);
    try {
      const ready = await fetch(`${mirror.url}/readyz`);
      expect(ready.status).toBe(200);
      const pull = streamGet(`${mirror.url}/v2/medium/blobs/${blob.digest}`);
      await pull.firstBytes;
      mirror.kill('SIGTERM');
      await waitFor('readyz 503', async () => ((await fetch(`${mirror.url}/readyz`)).status === 503 ? true : undefined));
      const result = await pull.done;
      expect(result).toMatchObject({ status: 200, bytes: blob.size, digest: blob.digest, complete: true });
      expect(await mirror.exited).toBe(0);
      await expect(fetch(`${mirror.url}/healthz`)).rejects.toThrow();
      expect(mirror.output()).toMatch(/"msg":"ocimirror stopped"/);
    } finally {
      mirror.kill('SIGKILL');
    }
  });
});

it('refuses to start on a bad config, naming the key and what is wrong', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-cfg-'));
  try {
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, 'upstreams:\n  - name: hub\n    registries: [docker.io]\n    tagTTL: soon\n');
    const run = spawnSync(process.execPath, [...CLI_ARGS, 'serve', '--config', file], { encoding: 'utf8', timeout: 20_000 });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('upstreams[0].url is required');
    expect(run.stderr).toContain("upstreams[0].tagTTL: expected a duration such as '30s', '5m' or '7d', got 'soon'");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
