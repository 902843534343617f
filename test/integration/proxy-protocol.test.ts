/**
 * The mirror behind a real HAProxy in `mode tcp`: with send-proxy-v2 and send-proxy (v1) pulls
 * work and the access log names the real client; a trusted peer without a header, an untrusted
 * peer with one, and malformed, truncated or slow headers are disconnected before HTTP. With the
 * mirror serving TLS behind send-proxy-v2, pulls over HTTPS name the real client, and HAProxy's
 * health check (a v2 LOCAL header, then a TLS handshake and GET /healthz) marks the server UP.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { makeTestCa } from '../helpers/test-pki.ts';
import { parseConfig } from '../../src/config/load.ts';
import { V2_SIGNATURE } from '../../src/http/connection/proxy-protocol.ts';
import { startMirror, type Mirror } from '../../src/mirror.ts';
import { runCommand } from '../helpers/containerd.ts';
import { mirrorConfig } from '../helpers/mirror.ts';
import { sha256 } from '../helpers/pull.ts';
import { freePort } from '../helpers/ports.ts';
import { localImageDigests, skopeoCopy } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { waitFor } from '../helpers/wait.ts';
import { startHaproxy, type Haproxy } from '../helpers/haproxy.ts';
import { captureLog } from '../helpers/log-capture.ts';

/** Sends `bytes` from `localAddress` (optionally in two parts `gapMs` apart) and resolves with what came back once the mirror closed. */
function exchange(port: number, parts: Buffer[], opts: { localAddress?: string; gapMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: opts.localAddress ?? '127.0.0.1' });
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connection still open after 10 s; received: ${got}`));
    }, 10_000);
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.on('connect', () => {
      const [first, ...rest] = parts;
      socket.write(first!);
      let i = 0;
      const next = (): void => {
        const p = rest[i++];
        if (p === undefined) return;
        setTimeout(() => {
          if (!socket.destroyed) socket.write(p);
          next();
        }, opts.gapMs ?? 0);
      };
      next();
    });
  });
}

/** A v2 PROXY header: command 1 = PROXY, 0 = LOCAL; family 0x11 = TCP over IPv4. */
function v2Header(command: number, family: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head[0] = 0x20 | command;
  head[1] = family;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}
/** Runs `curl -sS --fail` with `args`, expects it to succeed, and returns the sha256 digest of the body it printed. */
async function curlDigest(args: string[]): Promise<string> {
  const r = await runCommand('curl', ['-sS', '--fail', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return sha256(r.stdoutBuf);
}

const ipv4Body = Buffer.from([10, 1, 2, 3, 127, 0, 0, 1, 0x30, 0x39, 0x13, 0x88]);
const REQUEST = Buffer.from('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');

describeWithTools(['docker-registry', 'haproxy', 'curl', 'skopeo'], 'the PROXY protocol front end', () => {
  let upstream: Upstream;
  let mirror: Mirror;
  let dataDir: string;
  let haproxy: Haproxy | undefined;
  let haproxyDir: string;
  let mirrorPort: number;
  let v2Port: number;
  let v1Port: number;
  const log = captureLog();
  const access = () => log.access();

  beforeAll(async () => {
    upstream = await startUpstream();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ocimirror-pp-'));
    const raw = { ...mirrorConfig(upstream.url), storage: { path: dataDir }, server: { proxyProtocol: { trustedCidrs: ['127.0.0.1/32'], timeout: '500ms' } } };
    mirror = await startMirror(parseConfig(raw), log.logger);
    mirrorPort = Number(new URL(mirror.url).port);
    [v2Port, v1Port] = [await freePort(), await freePort()];
    haproxyDir = await mkdtemp(path.join(tmpdir(), 'ocimirror-pp-haproxy-'));
    haproxy = await startHaproxy(
      haproxyDir,
      [
        'listen v2',
        `  bind 127.0.0.1:${v2Port}`,
        `  server mirror 127.0.0.1:${mirrorPort} send-proxy-v2`,
        'listen v1',
        `  bind 127.0.0.1:${v1Port}`,
        `  server mirror 127.0.0.1:${mirrorPort} send-proxy`,
      ],
      v1Port,
    );
  }, 120_000);
  afterAll(async () => {
    await haproxy?.stop();
    await mirror?.stop({ graceMs: 2000, drainDelayMs: 0 });
    await upstream?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (haproxyDir) await rm(haproxyDir, { recursive: true, force: true });
  });

  it('serves pulls through HAProxy send-proxy-v2 and logs the real client address', async () => {
    const blob = upstream.fixtures.image('small').manifest.layers[0]!;
    expect(await curlDigest(['--interface', '127.0.0.2', `http://127.0.0.1:${v2Port}/v2/small/blobs/${blob.digest}`])).toBe(blob.digest);
    const line = await waitFor('the access line', () => access().find((l) => l.path === `/v2/small/blobs/${blob.digest}`));
    expect(line).toMatchObject({ status: 200, client: '127.0.0.2' });

    const image = upstream.fixtures.image('small');
    const dest = path.join(dataDir, '..', `${path.basename(dataDir)}-pulled`);
    try {
      await skopeoCopy(`docker://127.0.0.1:${v2Port}/${image.repo}:latest`, `dir:${dest}`, { retryTimes: 0 });
      const pulled = await localImageDigests(`dir:${dest}`);
      expect(pulled.missing).toEqual([]);
      for (const l of image.manifest.layers) expect(pulled.blobs.get(l.digest)).toBe(l.size);
    } finally {
      await rm(dest, { recursive: true, force: true });
    }
  }, 120_000);

  it('serves pulls through HAProxy send-proxy (v1) and logs the real client address', async () => {
    const r = await runCommand('curl', ['-sS', '--fail', '--interface', '127.0.0.2', '-H', 'User-Agent: via-v1', `http://127.0.0.1:${v1Port}/v2/`]);
    expect(r.code).toBe(0);
    const line = await waitFor('the access line', () => access().find((l) => l.ua === 'via-v1'));
    expect(line).toMatchObject({ status: 200, client: '127.0.0.2' });
  });

  it('serves a v2 LOCAL connection (a balancer health check) as a direct one', async () => {
    const answer = await exchange(mirrorPort, [Buffer.concat([v2Header(0, 0x00, Buffer.alloc(0)), REQUEST])]);
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
  });

  it('reads a request that arrives in the same packet as the header', async () => {
    const answer = await exchange(mirrorPort, [Buffer.concat([Buffer.from('PROXY TCP4 10.9.8.7 127.0.0.1 4000 5000\r\n'), REQUEST])]);
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(access().at(-1)).toMatchObject({ path: '/healthz', client: '10.9.8.7' });
  });

  it('closes, before HTTP, a trusted peer without a header, an untrusted peer, and malformed, truncated or slow headers', async () => {
    const before = access().length;
    const cases: Array<[string, Buffer[], { localAddress?: string; gapMs?: number }?]> = [
      ['no header', [REQUEST]],
      ['untrusted peer', [Buffer.concat([v2Header(1, 0x11, ipv4Body), REQUEST])], { localAddress: '127.0.0.2' }],
      ['bad v2 signature', [Buffer.concat([Buffer.from([...V2_SIGNATURE.subarray(0, 11), 0x0b]), Buffer.alloc(4), REQUEST])]],
      ['bad v2 version', [Buffer.concat([V2_SIGNATURE, Buffer.from([0x31, 0x11, 0, 12]), ipv4Body, REQUEST])]],
      ['v2 length shorter than its addresses', [Buffer.concat([v2Header(1, 0x11, ipv4Body.subarray(0, 4)), REQUEST])]],
      ['v2 length beyond any header', [Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff]), ipv4Body])]],
      ['bad v1 address', [Buffer.from('PROXY TCP4 10.1.2.300 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n')]],
      ['v1 without an end of line', [Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`)]],
      // Truncated: the header stops half way and never completes; the timeout closes it.
      ['truncated v2', [v2Header(1, 0x11, ipv4Body).subarray(0, 20)]],
      // Slow: a byte at a time, slower than the 500 ms timeout allows for the whole header.
      ['slow v1', [...Buffer.from('PROXY TCP4 10.1.2.3 127.0.0.1 1 2\r\n')].map((b) => Buffer.from([b])), { gapMs: 100 }],
    ];
    for (const [name, parts, opts] of cases) {
      const answer = await exchange(mirrorPort, parts, opts);
      expect(answer, name).toBe('');
    }
    expect(access().length).toBe(before);
    // Still serving.
    const ok = await runCommand('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${v2Port}/healthz`]);
    expect(ok.stdout).toBe('200');
  }, 60_000);
});

describeWithTools(['docker-registry', 'haproxy', 'curl', 'openssl'], 'TLS behind the PROXY protocol front end', () => {
  let upstream: Upstream;
  let mirror: Mirror;
  let dir: string;
  let haproxy: Haproxy | undefined;
  let port: number;
  const log = captureLog();
  const access = () => log.access();

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-pp-tls-'));
    const ca = await makeTestCa(dir);
    const server = await ca.issue('server', 'mirror');
    const raw = {
      ...mirrorConfig(upstream.url),
      storage: { path: path.join(dir, 'data') },
      tls: { cert: server.cert, key: server.key },
      server: { proxyProtocol: { trustedCidrs: ['127.0.0.1/32'], timeout: '2s' } },
    };
    mirror = await startMirror(parseConfig(raw), log.logger);
    expect(mirror.url).toMatch(/^https:/);
    port = await freePort();
    haproxy = await startHaproxy(
      dir,
      [
        'listen tls',
        `  bind 127.0.0.1:${port}`,
        // The check sends its own PROXY header (v2 LOCAL), then a TLS handshake and GET /healthz.
        '  option httpchk',
        '  http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost',
        '  http-check expect status 200',
        `  server mirror 127.0.0.1:${new URL(mirror.url).port} send-proxy-v2 check check-send-proxy check-ssl ca-file ${ca.ca} verify required inter 300ms rise 1`,
      ],
      port,
    );
  }, 120_000);
  afterAll(async () => {
    await haproxy?.stop();
    await mirror?.stop({ graceMs: 2000, drainDelayMs: 0 });
    await upstream?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("is marked UP by HAProxy's health check over the PROXY header and TLS", async () => {
    const row = await waitFor(
      'haproxy to mark the mirror UP after a passed check',
      async () => (await haproxy!.stats()).find((r) => r.pxname === 'tls' && r.svname === 'mirror' && r.status === 'UP' && r.check_status === 'L7OK'),
      20_000,
      100,
    );
    expect(row.check_code).toBe('200');
    // Not one check failed on the way: each sends the header and the ClientHello in one packet.
    expect(row.chkfail).toBe('0');
    // A LOCAL header names no client: the check is logged with HAProxy's own address.
    const check = await waitFor('the health check in the access log', () => access().find((l) => l.path === '/healthz'));
    expect(check).toMatchObject({ status: 200, client: '127.0.0.1' });
  });

  it('completes a TLS handshake whose ClientHello arrives in the same packet as the PROXY header', async () => {
    const mirrorPort = Number(new URL(mirror.url).port);
    const ask = (header: Buffer, ua: string) =>
      new Promise<string>((resolve, reject) => {
        const raw = net.connect({ host: '127.0.0.1', port: mirrorPort });
        let first = true;
        // A JS stream under the TLS client, so its first write (the ClientHello) can carry the header.
        const carrier = new Duplex({
          write(chunk: Buffer, _enc, cb) {
            raw.write(first ? Buffer.concat([header, chunk]) : chunk, cb);
            first = false;
          },
          read() {},
          final(cb) {
            raw.end();
            cb();
          },
        });
        raw.on('data', (d: Buffer) => carrier.push(d));
        raw.on('end', () => carrier.push(null));
        raw.on('error', reject);
        const timer = setTimeout(() => {
          raw.destroy();
          reject(new Error('no TLS answer within 5 s'));
        }, 5000);
        const s = tls.connect({ socket: carrier, ca: readFileSync(path.join(dir, 'ca.crt')), servername: 'localhost' }, () =>
          s.end(`GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ${ua}\r\nConnection: close\r\n\r\n`),
        );
        let got = '';
        s.on('data', (d: Buffer) => (got += d.toString()));
        s.on('error', reject);
        s.on('close', () => {
          clearTimeout(timer);
          resolve(got);
        });
      });
    expect(await ask(v2Header(0, 0x00, Buffer.alloc(0)), 'one-packet-local')).toMatch(/^HTTP\/1\.1 200/);
    expect(await ask(v2Header(1, 0x11, ipv4Body), 'one-packet-proxy')).toMatch(/^HTTP\/1\.1 200/);
    const line = await waitFor('the access line', () => access().find((l) => l.ua === 'one-packet-proxy'));
    expect(line).toMatchObject({ status: 200, client: '10.1.2.3' });
  });

  it('serves a manifest and a blob over TLS through HAProxy and logs the real client address', async () => {
    const base = `https://127.0.0.1:${port}/v2/small`;
    const tlsArgs = ['--cacert', path.join(dir, 'ca.crt'), '--interface', '127.0.0.2', '-H', 'User-Agent: via-tls'];
    const image = upstream.fixtures.image('small');
    expect(await curlDigest([...tlsArgs, '-H', `Accept: ${MANIFEST_ACCEPT}`, `${base}/manifests/latest`])).toBe(image.manifest.digest);
    const blob = image.manifest.layers[0]!;
    expect(await curlDigest([...tlsArgs, `${base}/blobs/${blob.digest}`])).toBe(blob.digest);
    const lines = await waitFor('both access lines', () => {
      const l = access().filter((x) => x.ua === 'via-tls');
      return l.length === 2 ? l : undefined;
    });
    expect(lines.map((l) => [l.path, l.status, l.client])).toEqual([
      ['/v2/small/manifests/latest', 200, '127.0.0.2'],
      [`/v2/small/blobs/${blob.digest}`, 200, '127.0.0.2'],
    ]);
  }, 60_000);
});
