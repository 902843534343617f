/**
 * containerd (ctr + hosts.toml) pulling through the mirror over HTTPS: the mirror serves a certificate from a CA
 * the test makes with openssl, and hosts.toml names that CA with `ca =` for the mirror's https host. Without it
 * containerd must refuse the certificate, so the pull that works is the one that verified it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CommandError, containerdAvailable, useContainerd, writeHostsToml } from '../helpers/containerd.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { makeTestCa } from '../helpers/test-pki.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const ARCH = process.arch === 'x64' ? 'amd64' : process.arch;

const ctrd = containerdAvailable();

describeWithTools(['docker-registry', 'containerd', 'ctr', 'openssl'], 'containerd (ctr) pulling through the mirror over HTTPS', () => {
  if (!ctrd.ok && !process.env.CI) {
    it.skip(`containerd unusable: ${ctrd.reason}`, () => undefined);
    return;
  }
  const REF = 'registry.test/multi:latest';
  const ctr = useContainerd();
  let upstream: Upstream;
  let m: TestMirror;
  let tmp = '';
  let caFile = '';
  const requests: string[] = [];

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'ocim-e2e-ctr-tls-'));
    const ca = await makeTestCa(tmp, 'ocimirror e2e CA');
    caFile = ca.ca;
    const tls = await ca.issue('tls', 'mirror');
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url, { tls }));
    m.mirror.server.server.on('request', (req: IncomingMessage) => requests.push(`${(req.socket as TLSSocket).encrypted ? 'https' : 'http'} ${req.method} ${req.url}`));
  }, 120_000);
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('refuses the mirror certificate when hosts.toml names no CA for it', async () => {
    const hostsDir = path.join(tmp, 'hosts-no-ca');
    await writeHostsToml(hostsDir, 'registry.test', m.url);
    const err = await ctr().pull(REF, { hostsDir, timeoutMs: 60_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(`${(err as CommandError).message}\n${(err as CommandError).result.stderr}`).toMatch(/x509: certificate signed by unknown authority/);
    expect(await ctr().imageDigest(REF)).toBeUndefined();
  }, 90_000);

  it('pulls an OCI index over HTTPS when hosts.toml gives the CA with ca =', async () => {
    expect(m.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const hostsDir = path.join(tmp, 'hosts-ca');
    await writeHostsToml(hostsDir, 'registry.test', m.url, { ca: caFile });
    requests.length = 0;
    const res = await ctr().pull(REF, { hostsDir, timeoutMs: 60_000 });
    const image = upstream.fixtures.image('multi');
    expect(res.digest).toBe(image.manifest.digest);
    const platform = image.manifest.children?.find((p) => p.platform?.architecture === ARCH) ?? image.manifest;
    const content = await ctr().contentDigests();
    for (const d of [image.manifest.digest, platform.digest, platform.config!.digest, ...platform.layers.map((l) => l.digest)]) expect(content).toContain(d);
    console.log(`[ctr-tls] ctr pull over HTTPS ${res.durationMs} ms; containerd sent:\n  ${requests.join('\n  ')}`);
    expect(requests.some((r) => /^https GET \/v2\/multi\/blobs\//.test(r))).toBe(true);
    for (const r of requests) expect(r).toMatch(/^https /);
  }, 90_000);
});
