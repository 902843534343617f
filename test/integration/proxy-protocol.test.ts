/**
 * The mirror behind a real HAProxy in `mode tcp`: with send-proxy-v2 and send-proxy (v1) pulls
 * work and the access log names the real client; a trusted peer without a header, an untrusted
 * peer with one, and malformed, truncated or slow headers are disconnected before HTTP.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { V2_SIGNATURE } from '../../src/http/connection/proxy-protocol.ts';
import { startMirror, type Mirror } from '../../src/mirror.ts';
import { createLogger } from '../../src/util/logger.ts';
import { runCommand } from '../helpers/containerd.ts';
import { mirrorConfig } from '../helpers/mirror.ts';
import { freePort } from '../helpers/ports.ts';
import { localImageDigests, skopeoCopy } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { waitFor } from '../helpers/wait.ts';

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
const ipv4Body = Buffer.from([10, 1, 2, 3, 127, 0, 0, 1, 0x30, 0x39, 0x13, 0x88]);
const REQUEST = Buffer.from('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');

describeWithTools(['docker-registry', 'haproxy', 'curl', 'skopeo'], 'the PROXY protocol front end', () => {
  let upstream: Upstream;
  let mirror: Mirror;
  let dataDir: string;
  let haproxy: ChildProcess | undefined;
  let text = '';
  let mirrorPort: number;
  let v2Port: number;
  let v1Port: number;
  const access = () =>
    text
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.module === 'access');

  beforeAll(async () => {
    upstream = await startUpstream();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ocimirror-pp-'));
    const sink = new PassThrough();
    sink.on('data', (d: Buffer) => (text += d.toString()));
    const raw = { ...mirrorConfig(upstream.url), storage: { path: dataDir }, server: { proxyProtocol: { trustedCidrs: ['127.0.0.1/32'], timeout: '500ms' } } };
    mirror = await startMirror(parseConfig(raw), createLogger('info', sink));
    mirrorPort = Number(new URL(mirror.url).port);
    [v2Port, v1Port] = [await freePort(), await freePort()];
    const cfg = path.join(dataDir, '..', `${path.basename(dataDir)}-haproxy.cfg`);
    await writeFile(
      cfg,
      [
        'defaults',
        '  mode tcp',
        '  timeout connect 5s',
        '  timeout client 60s',
        '  timeout server 60s',
        'listen v2',
        `  bind 127.0.0.1:${v2Port}`,
        `  server mirror 127.0.0.1:${mirrorPort} send-proxy-v2`,
        'listen v1',
        `  bind 127.0.0.1:${v1Port}`,
        `  server mirror 127.0.0.1:${mirrorPort} send-proxy`,
        '',
      ].join('\n'),
    );
    haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' });
    await waitFor(
      'haproxy to listen',
      () =>
        new Promise<boolean>((resolve) => {
          const s = net.connect({ host: '127.0.0.1', port: v1Port }, () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        }),
      10_000,
      50,
    );
  }, 120_000);
  afterAll(async () => {
    if (haproxy && haproxy.exitCode === null) {
      const exited = new Promise((r) => haproxy!.once('exit', r));
      haproxy.kill('SIGTERM');
      await exited;
    }
    await mirror?.stop({ graceMs: 2000, drainDelayMs: 0 });
    await upstream?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('serves pulls through HAProxy send-proxy-v2 and logs the real client address', async () => {
    const blob = upstream.fixtures.image('small').manifest.layers[0]!;
    const r = await runCommand('curl', ['-sS', '--fail', '--interface', '127.0.0.2', `http://127.0.0.1:${v2Port}/v2/small/blobs/${blob.digest}`]);
    expect(r.code).toBe(0);
    expect(`sha256:${createHash('sha256').update(r.stdoutBuf).digest('hex')}`).toBe(blob.digest);
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
