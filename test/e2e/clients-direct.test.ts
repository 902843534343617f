/**
 * Proves the client helpers (test/helpers/containerd.ts, test/helpers/skopeo.ts) against a real docker-registry,
 * with no ocimirror involved: containerd (ctr) and skopeo pull `docker.io/library/alpine:latest` through a mirror
 * configuration whose mirror is a local docker-registry holding a tiny synthetic two-platform image.
 * Later e2e suites point the same helpers at ocimirror instead.
 *
 * Needs: docker-registry, skopeo, containerd + ctr (root). Skips with a warning when they are missing, but fails
 * when process.env.CI is set.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLOSED_SERVER,
  CommandError,
  containerdAvailable,
  hasBinary,
  startContainerd,
  writeHostsToml,
  type Containerd,
} from '../helpers/containerd.ts';
import {
  localImageDigests,
  registriesConfText,
  skopeoCopy,
  skopeoInspectDigest,
  writeRegistriesConf,
} from '../helpers/skopeo.ts';

// ------------------------------------------------------------------------------------------------ tool check

// docker-registry + skopeo are needed by every test (skopeo loads the image); containerd only by its own block.
const inCI = !!process.env.CI;
const baseProblems = ['docker-registry', 'skopeo'].filter((b) => !hasBinary(b)).map((b) => `${b} not on PATH (apt-get install -y ${b})`);
const ctrdAvail = containerdAvailable();
const ctrdProblems = ctrdAvail.ok ? [] : [ctrdAvail.reason ?? 'containerd unavailable'];
const skipBase = baseProblems.length > 0 && !inCI;
const skipCtrd = skipBase || (ctrdProblems.length > 0 && !inCI);
for (const [what, list] of [['all client tests', baseProblems], ['containerd tests', ctrdProblems]] as const) {
  if (list.length === 0) continue;
  const msg = `clients-direct e2e: ${list.join('; ')}`;
  if (inCI) console.error(`${msg} (CI is set: ${what} FAIL)`);
  else console.warn(`SKIPPING ${what}: ${msg}`);
}

// ------------------------------------------------------------------------------------------------ tiny OCI image

const MT = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const goArch = (a: string) => ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' })[a] ?? a;
const HOST_ARCH = goArch(process.arch);
const OTHER_ARCH = HOST_ARCH === 'amd64' ? 'arm64' : 'amd64';

function tarHeader(name: string, size: number, dir: boolean): Buffer {
  const h = Buffer.alloc(512, 0);
  const oct = (off: number, len: number, n: number) => h.write(n.toString(8).padStart(len - 1, '0') + '\0', off, len, 'ascii');
  h.write(name, 0, 100, 'ascii');
  oct(100, 8, dir ? 0o755 : 0o644);
  oct(108, 8, 0);
  oct(116, 8, 0);
  oct(124, 12, size);
  oct(136, 12, 1_700_000_000);
  h.write('        ', 148, 8, 'ascii');
  h.write(dir ? '5' : '0', 156, 1, 'ascii');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

/** A gzip'd tar with one directory and one file of random bytes; returns the blob and its diff_id. */
function makeLayer(dirName: string, bytes: number): { blob: Buffer; diffId: string } {
  const data = randomBytes(bytes);
  const pad = Buffer.alloc((512 - (bytes % 512)) % 512, 0);
  const tar = Buffer.concat([tarHeader(`${dirName}/`, 0, true), tarHeader(`${dirName}/data.bin`, bytes, false), data, pad, Buffer.alloc(1024, 0)]);
  return { blob: gzipSync(tar, { level: 1 }), diffId: sha(tar) };
}

interface TestImage {
  layoutDir: string;
  indexDigest: string;
  /** arch → manifest digest / config digest / layer digests */
  platforms: Record<string, { manifest: string; config: string; layers: string[] }>;
  allDigests: string[];
}

async function makeOciLayout(dir: string): Promise<TestImage> {
  const blobDir = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  const put = async (b: Buffer) => {
    const d = sha(b);
    await writeFile(path.join(blobDir, d.slice(7)), b);
    return { digest: d, size: b.length };
  };
  const base = makeLayer('base', 48 * 1024);
  const baseDesc = { mediaType: MT.layer, ...(await put(base.blob)) };
  const platforms: TestImage['platforms'] = {};
  const manifests = [];
  for (const arch of [HOST_ARCH, OTHER_ARCH]) {
    const own = makeLayer(`own-${arch}`, 24 * 1024);
    const ownDesc = { mediaType: MT.layer, ...(await put(own.blob)) };
    const config = Buffer.from(
      JSON.stringify({
        created: '2024-01-01T00:00:00Z',
        architecture: arch,
        os: 'linux',
        config: { Cmd: ['/bin/true'] },
        rootfs: { type: 'layers', diff_ids: [base.diffId, own.diffId] },
      }),
    );
    const configDesc = { mediaType: MT.config, ...(await put(config)) };
    const manifest = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MT.manifest, config: configDesc, layers: [baseDesc, ownDesc] }),
    );
    const mDesc = await put(manifest);
    manifests.push({ mediaType: MT.manifest, ...mDesc, platform: { architecture: arch, os: 'linux' } });
    platforms[arch] = { manifest: mDesc.digest, config: configDesc.digest, layers: [baseDesc.digest, ownDesc.digest] };
  }
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.index, manifests }));
  const iDesc = await put(index);
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: MT.index, ...iDesc, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    }),
  );
  const allDigests = [iDesc.digest, ...Object.values(platforms).flatMap((p) => [p.manifest, p.config, ...p.layers])];
  return { layoutDir: dir, indexDigest: iDesc.digest, platforms, allDigests: [...new Set(allDigests)] };
}

// ------------------------------------------------------------------------------------------------ docker-registry

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

interface Registry {
  port: number;
  url: string;
  logFile: string;
  /** Byte length of the log now (use as a mark for requestsSince). */
  mark(): number;
  /** Access-log requests after `mark`. */
  requestsSince(mark: number): AccessLine[];
  stop(): Promise<void>;
}
interface AccessLine {
  method: string;
  path: string;
  status: number;
  agent: string;
}
const ACCESS_RE = /"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP\/[\d.]+" (\d{3}) \S+ "[^"]*" "([^"]*)"/;

async function startRegistry(dir: string): Promise<Registry> {
  await mkdir(path.join(dir, 'data'), { recursive: true });
  let lastErr = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const cfg = path.join(dir, 'config.yml');
    const logFile = path.join(dir, `registry-${attempt}.log`);
    await writeFile(
      cfg,
      [
        'version: 0.1',
        'log:',
        '  level: info',
        '  formatter: text',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${path.join(dir, 'data')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: 127.0.0.1:${port}`,
        '',
      ].join('\n'),
    );
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn('docker-registry', ['serve', cfg], { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    const stop = async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    };
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 20_000;
    let up = false;
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        const r = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2_000) });
        await r.arrayBuffer();
        up = true;
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    if (up) {
      const read = () => readFileSync(logFile);
      return {
        port,
        url,
        logFile,
        mark: () => read().length,
        requestsSince: (mark) =>
          read()
            .subarray(mark)
            .toString('utf8')
            .split('\n')
            .map((l) => ACCESS_RE.exec(l))
            .filter((m): m is RegExpExecArray => m !== null)
            .map((m) => ({ method: m[1] ?? '', path: m[2] ?? '', status: Number(m[3]), agent: m[4] ?? '' })),
        stop,
      };
    }
    lastErr = readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n');
    await stop();
  }
  throw new Error(`docker-registry did not come up:\n${lastErr}`);
}

// ------------------------------------------------------------------------------------------------ the suite

const REF = 'docker.io/library/alpine:latest';

describe.skipIf(skipBase)('client helpers against a plain docker-registry (no ocimirror)', () => {
  let tmp = '';
  let registry: Registry | undefined;
  let img: TestImage;

  beforeAll(async () => {
    if (baseProblems.length > 0) throw new Error(`required tools missing (CI is set): ${baseProblems.join('; ')}`);
    tmp = await mkdtemp(path.join(os.tmpdir(), 'ocim-clients-'));
    img = await makeOciLayout(path.join(tmp, 'layout'));
    registry = await startRegistry(path.join(tmp, 'registry'));
    // push the index + both platforms, keeping digests
    await skopeoCopy(`oci:${img.layoutDir}:latest`, `docker://127.0.0.1:${registry.port}/library/alpine:latest`, {
      all: true,
      preserveDigests: true,
      timeoutMs: 60_000,
    });
    const head = await fetch(`${registry.url}/v2/library/alpine/manifests/latest`, {
      method: 'HEAD',
      headers: { Accept: `${MT.index}, ${MT.manifest}` },
    });
    expect(head.headers.get('docker-content-digest')).toBe(img.indexDigest);
  });

  afterAll(async () => {
    await registry?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('writeHostsToml and registriesConfText produce the documented TOML', async () => {
    const d = path.join(tmp, 'toml-check');
    const f = await writeHostsToml(d, 'registry.example.test:5000', 'http://127.0.0.1:9/v2/registry.example.test', {
      overridePath: true,
      capabilities: ['pull'],
      headers: { 'x-test': 'a' },
    });
    expect(f).toBe(path.join(d, 'registry.example.test:5000', 'hosts.toml'));
    const text = await readFile(f, 'utf8');
    expect(text).toContain(`server = "${CLOSED_SERVER}"`);
    expect(text).toContain('[host."http://127.0.0.1:9/v2/registry.example.test"]');
    expect(text).toContain('capabilities = ["pull"]');
    expect(text).toContain('override_path = true');
    expect(text).toContain('"x-test" = "a"');
    const noServer = await readFile(await writeHostsToml(d, 'x.test', 'http://127.0.0.1:9', { server: null }), 'utf8');
    expect(noServer).not.toContain('server =');
    expect(noServer).toContain('capabilities = ["pull", "resolve"]');

    const conf = registriesConfText({ prefix: 'docker.io', mirror: '127.0.0.1:9/docker.io' });
    expect(conf).toMatch(/\[\[registry\]\]\nprefix = "docker.io"\nlocation = "127.0.0.1:1"\ninsecure = true/);
    expect(conf).toMatch(/\[\[registry.mirror\]\]\nlocation = "127.0.0.1:9\/docker.io"\ninsecure = true/);
    expect(() => registriesConfText({ prefix: 'docker.io', mirror: 'http://127.0.0.1:9' })).toThrow(/without a scheme/);
  });

  describe.skipIf(skipCtrd)('containerd (ctr)', () => {
    let ctrd: Containerd | undefined;
    let hostsDir = '';

    beforeAll(async () => {
      if (ctrdProblems.length > 0) throw new Error(`containerd unusable (CI is set): ${ctrdProblems.join('; ')}`);
      ctrd = await startContainerd();
      console.log(`[clients-direct] containerd ready in ${ctrd.startMs} ms (snapshotter ${ctrd.snapshotter}, socket ${ctrd.address})`);
      hostsDir = path.join(tmp, 'hosts');
      await writeHostsToml(hostsDir, 'docker.io', registry!.url);
    });

    afterAll(async () => {
      await ctrd?.stop();
    });

    it('pulls docker.io/library/alpine:latest through hosts.toml and gets the pushed index digest', async () => {
      const c = ctrd!;
      const mark = registry!.mark();
      const res = await c.pull(REF, { hostsDir, timeoutMs: 60_000 });
      console.log(`[clients-direct] ctr pull (default platform) took ${res.durationMs} ms`);
      expect(res.digest).toBe(img.indexDigest);
      expect(await c.imageDigest(REF)).toBe(img.indexDigest);

      const content = await c.contentDigests();
      const host = img.platforms[HOST_ARCH]!;
      const other = img.platforms[OTHER_ARCH]!;
      for (const d of [img.indexDigest, host.manifest, host.config, ...host.layers]) expect(content).toContain(d);
      expect(content).not.toContain(other.layers[1]);

      const reqs = registry!.requestsSince(mark);
      console.log(`[clients-direct] requests containerd sent:\n${reqs.map((r) => `  ${r.method} ${r.path} -> ${r.status}  (${r.agent})`).join('\n')}`);
      expect(reqs.length).toBeGreaterThan(0);
      expect(reqs[0]).toMatchObject({ method: 'HEAD', path: '/v2/library/alpine/manifests/latest?ns=docker.io', status: 200 });
      for (const r of reqs) {
        expect(r.path).toMatch(/\?ns=docker\.io$/);
        expect(r.agent).toMatch(/^containerd\//);
      }
      expect(reqs.some((r) => r.path.startsWith('/v2/library/alpine/blobs/'))).toBe(true);
      expect(reqs.some((r) => r.path === '/v2/')).toBe(false);
    });

    it('re-pulls another platform after removeImage', async () => {
      const c = ctrd!;
      await c.removeImage(REF);
      expect(await c.imageDigest(REF)).toBeUndefined();
      const after = await c.contentDigests();
      expect(after).not.toContain(img.indexDigest);
      const res = await c.pull(REF, { hostsDir, platform: `linux/${OTHER_ARCH}`, timeoutMs: 60_000 });
      expect(res.digest).toBe(img.indexDigest);
      const content = await c.contentDigests();
      const other = img.platforms[OTHER_ARCH]!;
      for (const d of [other.manifest, other.config, ...other.layers]) expect(content).toContain(d);
    });

    it('pulls all platforms', async () => {
      const c = ctrd!;
      await c.removeImage(REF);
      const res = await c.pull(REF, { hostsDir, allPlatforms: true, timeoutMs: 60_000 });
      expect(res.digest).toBe(img.indexDigest);
      const content = await c.contentDigests();
      for (const d of img.allDigests) expect(content).toContain(d);
    });

    it('honours override_path (mirror URL with an explicit /v2 API root)', async () => {
      const c = ctrd!;
      await c.removeImage(REF);
      const dir = path.join(tmp, 'hosts-override');
      await writeHostsToml(dir, 'docker.io', `${registry!.url}/v2`, { overridePath: true });
      const mark = registry!.mark();
      const res = await c.pull(REF, { hostsDir: dir, timeoutMs: 60_000 });
      expect(res.digest).toBe(img.indexDigest);
      const reqs = registry!.requestsSince(mark);
      expect(reqs[0]?.path).toBe('/v2/library/alpine/manifests/latest?ns=docker.io');
    });

    it('throws with ctr stderr when neither mirror nor server answers', async () => {
      const c = ctrd!;
      await c.removeImage(REF);
      const dir = path.join(tmp, 'hosts-dead');
      await writeHostsToml(dir, 'docker.io', 'http://127.0.0.1:2');
      const err = await c.pull(REF, { hostsDir: dir, timeoutMs: 30_000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect((err as CommandError).message).toMatch(/connection refused/i);
      expect((err as CommandError).result.code).not.toBe(0);
    });
  });

  describe('skopeo', () => {
    let conf = '';

    beforeAll(async () => {
      conf = await writeRegistriesConf(path.join(tmp, 'skopeo', 'registries.conf'), {
        prefix: 'docker.io',
        mirror: `127.0.0.1:${registry!.port}`,
      });
    });

    it('copies docker://docker.io/library/alpine:latest via the registries.conf mirror (all platforms, oci:)', async () => {
      const mark = registry!.mark();
      const dest = `oci:${path.join(tmp, 'skopeo', 'oci-all')}:latest`;
      const res = await skopeoCopy(`docker://${REF}`, dest, { registriesConf: conf, all: true, preserveDigests: true, timeoutMs: 60_000 });
      console.log(`[clients-direct] skopeo copy --all took ${res.durationMs} ms`);
      const local = await localImageDigests(dest);
      expect(local.digest).toBe(img.indexDigest);
      expect(local.mediaType).toBe(MT.index);
      expect(local.missing).toEqual([]);
      expect([...local.referenced].sort()).toEqual([...img.allDigests].sort());
      for (const d of img.allDigests) expect(local.blobs.has(d)).toBe(true);

      const reqs = registry!.requestsSince(mark);
      console.log(`[clients-direct] requests skopeo sent:\n${reqs.map((r) => `  ${r.method} ${r.path} -> ${r.status}  (${r.agent})`).join('\n')}`);
      expect(reqs.some((r) => r.path === '/v2/')).toBe(true);
      for (const r of reqs) expect(r.path).not.toContain('ns=');
      expect(reqs.some((r) => r.method === 'GET' && r.path === '/v2/library/alpine/manifests/latest')).toBe(true);
    });

    it('copies only this platform to dir: and inspects the index digest', async () => {
      const dest = `dir:${path.join(tmp, 'skopeo', 'dir-one')}`;
      await skopeoCopy(`docker://${REF}`, dest, { registriesConf: conf, timeoutMs: 60_000 });
      const local = await localImageDigests(dest);
      const host = img.platforms[HOST_ARCH]!;
      expect(local.digest).toBe(host.manifest);
      expect(local.missing).toEqual([]);
      expect([...local.referenced].sort()).toEqual([host.manifest, host.config, ...host.layers].sort());

      expect(await skopeoInspectDigest(`docker://${REF}`, { registriesConf: conf })).toBe(img.indexDigest);
    });

    it('fails loudly when the mirror is down (fallback location is a closed port)', async () => {
      const dead = await writeRegistriesConf(path.join(tmp, 'skopeo', 'dead.conf'), { prefix: 'docker.io', mirror: '127.0.0.1:2' });
      const err = await skopeoInspectDigest(`docker://${REF}`, { registriesConf: dead, timeoutMs: 60_000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect((err as CommandError).message).toMatch(/connection refused/i);
    });
  });
});

if (skipBase) {
  describe('client helpers against a plain docker-registry (no ocimirror)', () => {
    it.skip(`skipped: ${baseProblems.join('; ')}`, () => undefined);
  });
}
