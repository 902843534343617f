/**
 * HTTPS on the listener with certificates from a CA the test makes with openssl: curl and skopeo
 * pull through it, a rewritten certificate is served to new handshakes while an open connection
 * keeps working, and with a client CA a client without a certificate, or with one from another CA,
 * is refused at the handshake. With a client CA and accounts, a certificate names the client's
 * account: curl and skopeo pull with no password, the rules decide as for a password, an
 * Authorization header counts over the certificate, and /auth/token and the admin API take it.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { startMirror, type Mirror } from '../../src/mirror.ts';
import { runCommand } from '../helpers/containerd.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { mirrorConfig } from '../helpers/mirror.ts';
import { makeTestCa } from '../helpers/test-pki.ts';
import { localImageDigests, skopeoCopy } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { waitFor } from '../helpers/wait.ts';
import { captureLog } from '../helpers/log-capture.ts';

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
    const captured = captureLog();
    const mirror = await startMirror(parseConfig({ ...mirrorConfig(upstream.url), storage: { path: dataDir }, ...extra }), captured.logger);
    const s = { mirror, dataDir, log: captured.lines };
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

  it('without a client CA, a client certificate names no account: accounts still need credentials', async () => {
    const { mirror } = await start({
      tls: { cert: path.join(pki, 'one.crt'), key: path.join(pki, 'one.key') },
      auth: { rules: [{ accounts: ['puller'], repositories: ['**'], roles: ['pull'] }] },
    });
    const r = await runCommand('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', path.join(pki, 'ca.crt'), '--cert', path.join(pki, 'client.crt'), '--key', path.join(pki, 'client.key'), `${mirror.url}/v2/small/manifests/latest`]);
    expect(r.stdout).toBe('401');
  }, 60_000);
});

describeWithTools(['docker-registry', 'openssl', 'curl', 'skopeo', 'htpasswd'], 'client certificates as accounts', () => {
  let upstream: Upstream;
  let pki: string;
  let mirror: Mirror;
  let dataDir: string;
  const captured = captureLog();
  const log = captured.lines;
  /** curl against the mirror with the client certificate `cert` (a name under pki, or 'other/node'); `-w` writes the status. */
  const curl = (cert: string | undefined, url: string, args: string[] = []) =>
    runCommand('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', path.join(pki, 'ca.crt'), ...(cert ? ['--cert', path.join(pki, `${cert}.crt`), '--key', path.join(pki, `${cert}.key`)] : []), ...args, url]);

  beforeAll(async () => {
    upstream = await startUpstream();
    pki = await mkdtemp(path.join(tmpdir(), 'ocimirror-mtls-'));
    const ca = await makeTestCa(pki);
    await ca.issue('server', 'mirror');
    for (const [name, cn] of [['node', 'node'], ['ops', 'ops-7'], ['stranger', 'stranger'], ['nocn', 'unmapped']] as const) await ca.issue(name, cn, 'extendedKeyUsage=clientAuth');
    await mkdir(path.join(pki, 'other'));
    await (await makeTestCa(path.join(pki, 'other'), 'another CA')).issue('node', 'node', 'extendedKeyUsage=clientAuth');
    // skopeo's --src-cert-dir: CA certificates as *.crt, the client's pair as *.cert and *.key.
    await mkdir(path.join(pki, 'certs.d'));
    await copyFile(path.join(pki, 'ca.crt'), path.join(pki, 'certs.d', 'ca.crt'));
    await copyFile(path.join(pki, 'node.crt'), path.join(pki, 'certs.d', 'node.cert'));
    await copyFile(path.join(pki, 'node.key'), path.join(pki, 'certs.d', 'node.key'));
    const htpasswd = path.join(pki, 'htpasswd');
    execFileSync('htpasswd', ['-Bbc', htpasswd, 'node', 'node-password'], { stdio: 'ignore' });
    dataDir = await mkdtemp(path.join(tmpdir(), 'ocimirror-mtls-data-'));
    const raw = {
      ...mirrorConfig(upstream.url),
      storage: { path: dataDir },
      tls: { cert: path.join(pki, 'server.crt'), key: path.join(pki, 'server.key'), clientCA: path.join(pki, 'ca.crt') },
      auth: {
        htpasswd,
        certificates: [{ cn: 'ops-*', account: 'ops' }, { cn: 'node' }, { cn: 'stranger' }],
        rules: [
          { accounts: ['node'], repositories: ['**'], roles: ['pull'] },
          { accounts: ['ops'], repositories: ['**'], roles: ['admin'] },
        ],
      },
    };
    mirror = await startMirror(parseConfig(raw), captured.logger);
  }, 120_000);
  afterAll(async () => {
    await mirror?.stop({ graceMs: 2000, drainDelayMs: 0 });
    await upstream?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (pki) await rm(pki, { recursive: true, force: true });
  });

  it('serves a client whose certificate names an account without a password, manifest hits from the fast path', async () => {
    const manifest = `${mirror.url}/v2/small/manifests/latest`;
    const accept = ['-H', `Accept: ${MANIFEST_ACCEPT}`, '-D', '-'];
    const first = await curl('node', manifest, accept);
    const second = await curl('node', manifest, accept);
    expect(first.stdout).toMatch(/200$/);
    expect(second.stdout).toMatch(/200$/);
    expect(second.stdout.toLowerCase()).toContain('x-cache: hit');
    const blob = upstream.fixtures.image('small').manifest.layers[0]!;
    expect((await curl('node', `${mirror.url}/v2/small/blobs/${blob.digest}`)).stdout).toBe('200');
    const line = log().find((l) => l.module === 'access' && l.path === '/v2/small/manifests/latest');
    expect(line).toMatchObject({ status: 200, clientCN: 'node' });
  });

  it('copies an image with skopeo given only a certificate directory', async () => {
    const image = upstream.fixtures.image('small');
    const dest = path.join(pki, 'pulled');
    await skopeoCopy(`docker://${new URL(mirror.url).host}/${image.repo}:latest`, `dir:${dest}`, {
      srcTlsVerify: true,
      retryTimes: 0,
      extraArgs: ['--src-cert-dir', path.join(pki, 'certs.d'), '--src-no-creds'],
    });
    const pulled = await localImageDigests(`dir:${dest}`);
    expect(pulled.missing).toEqual([]);
  }, 120_000);

  it('applies the rules to a certificate account: no rule is 403 on a repository, no mapping is a 401 challenge', async () => {
    const manifest = `${mirror.url}/v2/small/manifests/latest`;
    expect((await curl('stranger', `${mirror.url}/v2/`)).stdout).toBe('200');
    expect((await curl('stranger', manifest)).stdout).toBe('403');
    expect((await curl('nocn', manifest)).stdout).toBe('401');
    expect((await curl('node', manifest, ['-X', 'DELETE'])).stdout).toBe('403');
  });

  it('lets an Authorization header count over the certificate', async () => {
    const manifest = `${mirror.url}/v2/small/manifests/latest`;
    expect((await curl('node', manifest, ['-u', 'node:wrong-password'])).stdout).toBe('401');
    expect((await curl('stranger', manifest, ['-u', 'node:node-password'])).stdout).toBe('200');
  });

  it('issues a token for the certificate account from /auth/token with no credentials', async () => {
    const r = await runCommand('curl', ['-sS', '--fail', '--cacert', path.join(pki, 'ca.crt'), '--cert', path.join(pki, 'node.crt'), '--key', path.join(pki, 'node.key'), `${mirror.url}/auth/token?service=ocimirror&scope=repository:small:pull,push`]);
    expect(r.code, r.stderr).toBe(0);
    const { token } = JSON.parse(r.stdout) as { token: string };
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sub: string; access: unknown };
    expect(claims).toMatchObject({ sub: 'node', access: [{ type: 'repository', name: 'small', actions: ['pull'] }] });
    expect((await curl('stranger', `${mirror.url}/v2/small/manifests/latest`, ['-H', `Authorization: Bearer ${token}`])).stdout).toBe('200');
    const unmapped = await curl('nocn', `${mirror.url}/auth/token?service=ocimirror&scope=repository:small:pull`);
    expect(unmapped.stdout).toBe('401');
  });

  it('opens the admin API to a certificate whose account has admin, and only to it', async () => {
    expect((await curl('ops', `${mirror.url}/admin/v1/usage`)).stdout).toBe('200');
    expect((await curl('node', `${mirror.url}/admin/v1/usage`)).stdout).toBe('403');
    expect((await curl('nocn', `${mirror.url}/admin/v1/usage`)).stdout).toBe('401');
  });

  it("refuses another CA's certificate for the same name at the handshake", async () => {
    const r = await curl('other/node', `${mirror.url}/v2/small/manifests/latest`);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('000');
  });
});
