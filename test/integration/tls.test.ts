/**
 * HTTPS on the listener with certificates from a CA the test makes with openssl: curl and skopeo
 * pull through it, a rewritten certificate is served to new handshakes while an open connection
 * keeps working, and with a client CA a client without a certificate is refused at the handshake.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { startMirror, type Mirror } from '../../src/mirror.ts';
import { createLogger } from '../../src/util/logger.ts';
import { runCommand } from '../helpers/containerd.ts';
import { mirrorConfig } from '../helpers/mirror.ts';
import { makeTestCa } from '../helpers/test-pki.ts';
import { localImageDigests, skopeoCopy } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { waitFor } from '../helpers/wait.ts';

interface Started {
  mirror: Mirror;
  log: () => Array<Record<string, unknown>>;
  dataDir: string;
}

describeWithTools(['docker-registry', 'openssl', 'curl', 'skopeo'], 'the TLS listener', () => {
  let upstream: Upstream;
  let pki: string;
  const started: Started[] = [];

  async function start(extra: Record<string, unknown>): Promise<Started> {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'ocimirror-tls-'));
    let text = '';
    const sink = new PassThrough();
    sink.on('data', (d: Buffer) => (text += d.toString()));
    const mirror = await startMirror(parseConfig({ ...mirrorConfig(upstream.url), storage: { path: dataDir }, ...extra }), createLogger('info', sink));
    const s = { mirror, dataDir, log: () => text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
    started.push(s);
    return s;
  }

  beforeAll(async () => {
    upstream = await startUpstream();
    pki = await mkdtemp(path.join(tmpdir(), 'ocimirror-pki-'));
    const ca = await makeTestCa(pki);
    await ca.issue('one', 'mirror-one');
    await ca.issue('two', 'mirror-two');
    await ca.issue('client', 'puller', 'extendedKeyUsage=clientAuth');
    await copyFile(path.join(pki, 'one.crt'), path.join(pki, 'tls.crt'));
    await copyFile(path.join(pki, 'one.key'), path.join(pki, 'tls.key'));
    // skopeo's --src-cert-dir takes CA certificates as *.crt files.
    await mkdir(path.join(pki, 'certs.d'));
    await copyFile(path.join(pki, 'ca.crt'), path.join(pki, 'certs.d', 'ca.crt'));
  }, 120_000);
  afterAll(async () => {
    for (const s of started) {
      await s.mirror.stop({ graceMs: 2000, drainDelayMs: 0 });
      await rm(s.dataDir, { recursive: true, force: true });
    }
    await upstream?.stop();
    if (pki) await rm(pki, { recursive: true, force: true });
  });

  it('serves pulls over HTTPS to curl and skopeo, blob bodies included when they are cache hits', async () => {
    // sendfile 'all' would send cache hits from the page cache; over TLS they must take the buffered path.
    const { mirror, log } = await start({ tls: { cert: path.join(pki, 'tls.crt'), key: path.join(pki, 'tls.key') }, server: { sendfile: 'all' } });
    expect(mirror.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const blob = upstream.fixtures.image('small').manifest.layers[0]!;
    for (let i = 0; i < 2; i++) {
      const r = await runCommand('curl', ['-sS', '--fail', '--cacert', path.join(pki, 'ca.crt'), `${mirror.url}/v2/small/blobs/${blob.digest}`]);
      expect(r.code).toBe(0);
      expect(`sha256:${createHash('sha256').update(r.stdoutBuf).digest('hex')}`).toBe(blob.digest);
      await waitFor('the blob to be committed', () => mirror.storage.metadata.getBlob(blob.digest));
    }
    const hits = log().filter((l) => l.module === 'access' && l.path === `/v2/small/blobs/${blob.digest}`);
    expect(hits.map((l) => l.cache)).toEqual(['MISS', 'HIT']);
    expect(hits[1]).toMatchObject({ client: '127.0.0.1' });

    const image = upstream.fixtures.image('small');
    const dest = path.join(pki, 'pulled');
    await skopeoCopy(`docker://${new URL(mirror.url).host}/${image.repo}:latest`, `dir:${dest}`, {
      srcTlsVerify: true,
      retryTimes: 0,
      extraArgs: ['--src-cert-dir', path.join(pki, 'certs.d')],
    });
    const pulled = await localImageDigests(`dir:${dest}`);
    expect(pulled.missing).toEqual([]);
    for (const l of image.manifest.layers) expect(pulled.blobs.get(l.digest)).toBe(l.size);
  }, 120_000);

  it('serves a rewritten certificate to new handshakes without dropping an open connection', async () => {
    const dir = await mkdtemp(path.join(pki, 'rotate-'));
    await copyFile(path.join(pki, 'one.crt'), path.join(dir, 'tls.crt'));
    await copyFile(path.join(pki, 'one.key'), path.join(dir, 'tls.key'));
    const { mirror } = await start({ tls: { cert: path.join(dir, 'tls.crt'), key: path.join(dir, 'tls.key') } });
    const { port } = new URL(mirror.url);
    const ca = path.join(pki, 'ca.crt');
    const connect = () =>
      new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: Number(port), ca: [readFileSync(ca)], servername: 'localhost' }, () => resolve(s));
        s.once('error', reject);
      });
    const served = async (): Promise<string> => {
      const s = await connect();
      const cn = s.getPeerCertificate().subject.CN as string;
      s.destroy();
      return cn;
    };
    const held = await connect();
    expect(held.getPeerCertificate().subject.CN).toBe('mirror-one');
    await writeFile(path.join(dir, 'tls.key'), readFileSync(path.join(pki, 'two.key')));
    await writeFile(path.join(dir, 'tls.crt'), readFileSync(path.join(pki, 'two.crt')));
    await waitFor('the new certificate to be served', async () => (await served()) === 'mirror-two', 20_000, 200);
    // The connection made before the rotation still answers.
    const answer = await new Promise<string>((resolve, reject) => {
      let got = '';
      held.on('data', (d: Buffer) => {
        got += d.toString();
        if (got.includes('\r\n\r\n')) resolve(got);
      });
      held.once('error', reject);
      held.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    });
    held.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
  }, 60_000);

  it('with a client CA, refuses a client without a certificate at the handshake and logs the CN of one with', async () => {
    const { mirror, log } = await start({ tls: { cert: path.join(pki, 'one.crt'), key: path.join(pki, 'one.key'), clientCA: path.join(pki, 'ca.crt') } });
    const url = `${mirror.url}/v2/`;
    const bare = await runCommand('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', path.join(pki, 'ca.crt'), url]);
    expect(bare.code).not.toBe(0);
    expect(bare.stdout).toBe('000');
    const withCert = await runCommand('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', path.join(pki, 'ca.crt'), '--cert', path.join(pki, 'client.crt'), '--key', path.join(pki, 'client.key'), url]);
    expect(withCert.stdout).toBe('200');
    const line = await waitFor('the access line', () => log().find((l) => l.module === 'access' && l.path === '/v2/'));
    expect(line).toMatchObject({ status: 200, clientCN: 'puller', client: '127.0.0.1' });
    expect(log().filter((l) => l.module === 'access')).toHaveLength(1);
  }, 60_000);
});
