/**
 * Real clients through the real mirror (in-process, against a real docker-registry behind a counting proxy):
 * skopeo (containers/image, as podman/CRI-O) by default routing, registries.conf path prefix and Host header;
 * containerd (ctr + hosts.toml, `?ns=`). Every pull is checked against the fixtures' digests, and warm pulls
 * must cost the upstream nothing. What each client sent the mirror is recorded off the mirror's own http.Server.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { CommandError, containerdAvailable, useContainerd, writeHostsToml } from '../helpers/containerd.ts';
import type { FixtureImage } from '../helpers/images.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { freePort } from '../helpers/ports.ts';
import { localImageDigests, skopeoCopy, writeRegistriesConf } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const ARCH = process.arch === 'x64' ? 'amd64' : process.arch;

/** What a client sent the mirror: request lines (with Host) and non-HTTP openings such as a TLS ClientHello. */
function recordRequests(m: TestMirror) {
  const log = { requests: [] as string[], garbage: [] as number[] };
  m.mirror.server.server.on('request', (req: IncomingMessage) => log.requests.push(`${req.method} ${req.url} (Host ${req.headers.host})`));
  m.mirror.server.server.on('clientError', (err: Error & { rawPacket?: Buffer }) => log.garbage.push(err.rawPacket?.[0] ?? -1));
  return Object.assign(log, { reset: () => void ((log.requests = []), (log.garbage = [])) });
}

/** The platform image a client pulls from `image` on this machine (the image itself when it is not a list). */
const forThisPlatform = (image: FixtureImage) => image.manifest.children?.find((c) => c.platform?.architecture === ARCH) ?? image.manifest;

/** Asserts a skopeo destination holds exactly `image`'s manifest (or list, with every child), config and layers. */
async function expectLocalImage(dest: string, image: FixtureImage, all = false) {
  const local = await localImageDigests(dest);
  const top = all ? image.manifest : forThisPlatform(image);
  const expected = [top, ...(all ? (top.children ?? []) : [])].flatMap((m) => [m.digest, ...(m.config ? [m.config.digest] : []), ...m.layers.map((l) => l.digest)]);
  expect(local.digest).toBe(top.digest);
  expect(local.missing).toEqual([]);
  expect([...local.referenced].sort()).toEqual([...new Set(expected)].sort());
}

const upstreamSummary = (u: Upstream) => u.proxy.records.map((r) => `${r.method} ${r.path} -> ${r.status}`).join('\n');

describeWithTools(['docker-registry', 'skopeo'], 'skopeo (containers/image) pulling through the mirror', () => {
  let upstream: Upstream;
  let m: TestMirror;
  let seen: ReturnType<typeof recordRequests>;
  let tmp = '';
  let conf = '';
  const out = (name: string) => path.join(tmp, name);

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'ocim-e2e-skopeo-'));
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url));
    seen = recordRequests(m);
    conf = await writeRegistriesConf(out('registries.conf'), { prefix: 'docker.io', mirror: `${new URL(m.url).host}/docker.io` });
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });
  beforeEach(() => {
    upstream.proxy.reset();
    seen.reset();
  });

  it('copies an OCI and a Docker schema2 image by default routing with the upstream digests', async () => {
    const host = new URL(m.url).host;
    const small = await skopeoCopy(`docker://${host}/small:latest`, `oci:${out('small')}:latest`, { preserveDigests: true, timeoutMs: 60_000 });
    await expectLocalImage(`oci:${out('small')}:latest`, upstream.fixtures.image('small:latest'));
    const medium = await skopeoCopy(`docker://${host}/medium:latest`, `dir:${out('medium')}`, { timeoutMs: 60_000 });
    await expectLocalImage(`dir:${out('medium')}`, upstream.fixtures.image('medium'));
    console.log(`[mirror-clients] skopeo cold copy small ${small.durationMs} ms, medium ${medium.durationMs} ms; skopeo sent:\n  ${seen.requests.join('\n  ')}`);
    expect(upstream.proxy.count({ pathIncludes: '/v2/small/blobs/' })).toBeGreaterThan(0);
    expect(upstream.proxy.count({ pathIncludes: '/v2/medium/blobs/' })).toBeGreaterThan(0);
  });

  it('copies a Docker manifest list through a registries.conf mirror with a docker.io path prefix, after a TLS ClientHello', async () => {
    const res = await skopeoCopy('docker://docker.io/library/alpine:latest', `dir:${out('alpine-all')}`, { registriesConf: conf, all: true, timeoutMs: 60_000 });
    await expectLocalImage(`dir:${out('alpine-all')}`, upstream.fixtures.image('library/alpine'), true);
    console.log(`[mirror-clients] skopeo --all via registries.conf ${res.durationMs} ms; skopeo sent:\n  ${seen.requests.join('\n  ')}\n  + ${seen.garbage.length} non-HTTP openings (first bytes ${seen.garbage.join(',')})`);
    expect(seen.garbage).toContain(0x16); // TLS handshake record, survived
    expect(seen.requests).toContain(`GET /v2/docker.io/library/alpine/manifests/latest (Host ${new URL(m.url).host})`);
    for (const r of upstream.proxy.records) expect(r.path).toMatch(/^\/v2\/library\/alpine\//);
  });

  it('makes zero upstream requests for a warm pull after a cold one', async () => {
    const host = new URL(m.url).host;
    await skopeoCopy(`docker://${host}/small:latest`, `oci:${out('small-warm')}:latest`, { preserveDigests: true, timeoutMs: 60_000 });
    await expectLocalImage(`oci:${out('small-warm')}:latest`, upstream.fixtures.image('small:latest'));
    await skopeoCopy(`docker://${host}/medium:latest`, `dir:${out('medium-warm')}`, { timeoutMs: 60_000 });
    await skopeoCopy('docker://docker.io/library/alpine:latest', `dir:${out('alpine-warm')}`, { registriesConf: conf, all: true, timeoutMs: 60_000 });
    await expectLocalImage(`dir:${out('alpine-warm')}`, upstream.fixtures.image('library/alpine'), true);
    expect(seen.requests.length).toBeGreaterThan(0);
    expect(upstream.proxy.count(), upstreamSummary(upstream)).toBe(0);
  });

  it('routes by Host header alone when the mirror has no default upstream', async () => {
    let hm: TestMirror | undefined;
    let port = 0;
    for (let attempt = 0; !hm; attempt++) {
      port = await freePort();
      const raw = { ...mirrorConfig(upstream.url), listen: `127.0.0.1:${port}`, defaultUpstream: undefined };
      raw.upstreams = [{ name: 'test', url: upstream.url, registries: ['registry.test', `localhost:${port}`], tagTTL: '1h' }];
      hm = await startTestMirror(raw).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EADDRINUSE' || attempt >= 2) throw e;
        return undefined;
      });
    }
    const hseen = recordRequests(hm);
    try {
      await skopeoCopy(`docker://localhost:${port}/small:latest`, `oci:${out('small-host')}:latest`, { preserveDigests: true, timeoutMs: 60_000 });
      await expectLocalImage(`oci:${out('small-host')}:latest`, upstream.fixtures.image('small:latest'));
      expect(hseen.requests).toContain(`GET /v2/small/manifests/latest (Host localhost:${port})`);
      upstream.proxy.reset();
      const err = await skopeoCopy(`docker://127.0.0.1:${port}/small:latest`, `oci:${out('small-nohost')}:latest`, { timeoutMs: 60_000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect((err as CommandError).message).toMatch(/name unknown/i);
      expect(upstream.proxy.count(), upstreamSummary(upstream)).toBe(0); // refused before any upstream connection
    } finally {
      await hm.stop();
    }
  });
});

const ctrd = containerdAvailable();

describeWithTools(['docker-registry', 'containerd', 'ctr'], 'containerd (ctr, hosts.toml) pulling through the mirror', () => {
  if (!ctrd.ok && !process.env.CI) {
    it.skip(`containerd unusable: ${ctrd.reason}`, () => undefined);
    return;
  }
  const ALPINE = 'docker.io/library/alpine:latest';
  const MULTI = 'registry.test/multi:latest';
  const ctr = useContainerd();
  let upstream: Upstream;
  let m: TestMirror;
  let seen: ReturnType<typeof recordRequests>;
  let hostsDir = '';

  beforeAll(async () => {
    hostsDir = await mkdtemp(path.join(os.tmpdir(), 'ocim-e2e-hosts-'));
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url));
    seen = recordRequests(m);
    await writeHostsToml(hostsDir, 'docker.io', m.url);
    await writeHostsToml(hostsDir, 'registry.test', m.url);
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
    if (hostsDir) await rm(hostsDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    upstream.proxy.reset();
    seen.reset();
  });

  /** Pulls `ref` and checks the image record and the content store against the fixture. */
  async function pull(ref: string, image: FixtureImage) {
    const res = await ctr().pull(ref, { hostsDir, timeoutMs: 60_000 });
    expect(res.digest).toBe(image.manifest.digest);
    const platform = forThisPlatform(image);
    const content = await ctr().contentDigests();
    for (const d of [image.manifest.digest, platform.digest, platform.config!.digest, ...platform.layers.map((l) => l.digest)]) expect(content).toContain(d);
    return res;
  }

  it('pulls docker.io/library/alpine with ?ns=docker.io from the hub upstream and gets the list digest', async () => {
    const res = await pull(ALPINE, upstream.fixtures.image('library/alpine'));
    console.log(`[mirror-clients] ctr cold pull ${ALPINE} ${res.durationMs} ms; containerd sent:\n  ${seen.requests.join('\n  ')}`);
    expect(seen.requests[0]).toMatch(/^HEAD \/v2\/library\/alpine\/manifests\/latest\?ns=docker\.io /);
    for (const r of seen.requests) expect(r).toMatch(/\?ns=docker\.io /);
    expect(upstream.proxy.count({ pathIncludes: '/v2/library/alpine/blobs/' })).toBeGreaterThan(0);
  });

  it('pulls registry.test/multi with ?ns=registry.test and gets the OCI index digest', async () => {
    const res = await pull(MULTI, upstream.fixtures.image('multi'));
    console.log(`[mirror-clients] ctr cold pull ${MULTI} ${res.durationMs} ms; containerd sent:\n  ${seen.requests.join('\n  ')}`);
    expect(seen.requests[0]).toMatch(/^HEAD \/v2\/multi\/manifests\/latest\?ns=registry\.test /);
    for (const r of seen.requests) expect(r).toMatch(/^\S+ \/v2\/multi\/\S+\?ns=registry\.test /);
    expect(upstream.proxy.count({ pathIncludes: '/v2/multi/blobs/' })).toBeGreaterThan(0);
  });

  it('re-pulls both images after removing them from containerd with zero upstream requests', async () => {
    for (const ref of [ALPINE, MULTI]) await ctr().removeImage(ref);
    const left = await ctr().contentDigests();
    expect(left).not.toContain(upstream.fixtures.image('library/alpine').manifest.digest);
    expect(left).not.toContain(upstream.fixtures.image('multi').manifest.digest);
    upstream.proxy.reset();
    seen.reset();
    const a = await pull(ALPINE, upstream.fixtures.image('library/alpine'));
    const b = await pull(MULTI, upstream.fixtures.image('multi'));
    console.log(`[mirror-clients] ctr warm pulls ${a.durationMs} + ${b.durationMs} ms, ${seen.requests.length} requests to the mirror`);
    expect(seen.requests.some((r) => r.includes('/blobs/'))).toBe(true);
    expect(upstream.proxy.count(), upstreamSummary(upstream)).toBe(0);
  });
});
