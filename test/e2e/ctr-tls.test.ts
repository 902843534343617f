/**
 * containerd (ctr + hosts.toml) pulling through the mirror over HTTPS: the mirror serves a certificate from a CA
 * the test makes with openssl, and hosts.toml names that CA with `ca =` for the mirror's https host. Without it
 * containerd must refuse the certificate, so the pull that works is the one that verified it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CommandError, containerdAvailable, runCommand, startContainerd, writeHostsToml, type Containerd } from '../helpers/containerd.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const ARCH = process.arch === 'x64' ? 'amd64' : process.arch;

async function openssl(dir: string, args: string[]): Promise<void> {
  const r = await runCommand('openssl', args, { cwd: dir, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

const ctrd = containerdAvailable();

describeWithTools(['docker-registry', 'containerd', 'ctr', 'openssl'], 'containerd (ctr) pulling through the mirror over HTTPS', () => {
  if (!ctrd.ok && !process.env.CI) {
    it.skip(`containerd unusable: ${ctrd.reason}`, () => undefined);
    return;
  }
  const REF = 'registry.test/multi:latest';
  let upstream: Upstream;
  let m: TestMirror;
  let c: Containerd | undefined;
  let tmp = '';
  const requests: string[] = [];

  beforeAll(async () => {
    if (!ctrd.ok) throw new Error(`containerd unusable (CI is set): ${ctrd.reason}`);
    tmp = await mkdtemp(path.join(os.tmpdir(), 'ocim-e2e-ctr-tls-'));
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await openssl(tmp, ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=ocimirror e2e CA', '-days', '2']);
    await openssl(tmp, ['req', ...ec, '-keyout', 'tls.key', '-out', 'tls.csr', '-subj', '/CN=mirror']);
    await writeFile(path.join(tmp, 'tls.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    await openssl(tmp, ['x509', '-req', '-in', 'tls.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'tls.crt', '-days', '2', '-extfile', 'tls.ext']);
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url, { tls: { cert: path.join(tmp, 'tls.crt'), key: path.join(tmp, 'tls.key') } }));
    m.mirror.server.server.on('request', (req: IncomingMessage) => requests.push(`${(req.socket as TLSSocket).encrypted ? 'https' : 'http'} ${req.method} ${req.url}`));
    c = await startContainerd();
  }, 120_000);
  afterAll(async () => {
    try {
      await c?.stop();
    } finally {
      await m?.stop();
      await upstream?.stop();
      if (tmp) await rm(tmp, { recursive: true, force: true });
    }
  });

  it('refuses the mirror certificate when hosts.toml names no CA for it', async () => {
    const hostsDir = path.join(tmp, 'hosts-no-ca');
    await writeHostsToml(hostsDir, 'registry.test', m.url);
    const err = await c!.pull(REF, { hostsDir, timeoutMs: 60_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(`${(err as CommandError).message}\n${(err as CommandError).result.stderr}`).toMatch(/x509: certificate signed by unknown authority/);
    expect(await c!.imageDigest(REF)).toBeUndefined();
  }, 90_000);

  it('pulls an OCI index over HTTPS when hosts.toml gives the CA with ca =', async () => {
    expect(m.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const hostsDir = path.join(tmp, 'hosts-ca');
    await writeHostsToml(hostsDir, 'registry.test', m.url, { ca: path.join(tmp, 'ca.pem') });
    requests.length = 0;
    const res = await c!.pull(REF, { hostsDir, timeoutMs: 60_000 });
    const image = upstream.fixtures.image('multi');
    expect(res.digest).toBe(image.manifest.digest);
    const platform = image.manifest.children?.find((p) => p.platform?.architecture === ARCH) ?? image.manifest;
    const content = await c!.contentDigests();
    for (const d of [image.manifest.digest, platform.digest, platform.config!.digest, ...platform.layers.map((l) => l.digest)]) expect(content).toContain(d);
    console.log(`[ctr-tls] ctr pull over HTTPS ${res.durationMs} ms; containerd sent:\n  ${requests.join('\n  ')}`);
    expect(requests.some((r) => /^https GET \/v2\/multi\/blobs\//.test(r))).toBe(true);
    for (const r of requests) expect(r).toMatch(/^https /);
  }, 90_000);
});
