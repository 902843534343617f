import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { UpstreamClient, type UpstreamRequest } from '../../../../src/upstream/upstream-client.ts';
import { SlabPool } from '../../../../src/util/read-slabs.ts';
import { basic, cleanupAfterEach, closedPort, rejection, startServer, startTokenRegistry, upstreamConfig } from '../fake-http.ts';

const { cleanup, track } = cleanupAfterEach();

const blob = (digest = 'sha256:abc'): UpstreamRequest => ({ method: 'GET', repository: 'r', path: `r/blobs/${digest}`, bulk: true });

/** The body's sha256, each chunk released to the read slabs once hashed (as the blob fill does once it is written). */
async function sha256({ body, release }: { body: Readable; release?: ((chunk: Buffer) => void) | undefined }): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of body) {
    hash.update(chunk as Buffer);
    release?.(chunk as Buffer);
  }
  return hash.digest('hex');
}

/** A server that answers each connection's requests with `answer(connectionIndex, requestIndex, socket)`. */
async function rawServer(answer: (conn: number, req: number, socket: net.Socket) => void): Promise<{ origin: string; close(): Promise<void>; connections: () => number }> {
  let conns = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const conn = conns++;
    let reqs = 0;
    let pending = '';
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.on('data', (d) => {
      pending += d.toString('latin1');
      while (pending.includes('\r\n\r\n')) {
        pending = pending.slice(pending.indexOf('\r\n\r\n') + 4);
        answer(conn, reqs++, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => conns,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('UpstreamClient bulk GETs', () => {
  it('streams a multi-MiB blob body byte for byte across several read slabs', async () => {
    const data = randomBytes(5 * 1024 * 1024 + 123);
    const server = track(await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': data.length, 'content-type': 'application/octet-stream' });
      res.end(data);
    }));
    const client = track(new UpstreamClient(upstreamConfig(server.origin)));
    const res = await client.request(blob());
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(await sha256(res)).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('decodes a chunked body and reads a close-delimited one to the end', async () => {
    const chunked = track(await startServer((_req, res) => {
      res.writeHead(200);
      res.write('part one, ');
      setTimeout(() => res.end('part two'), 20);
    }));
    const closeDelimited = track(await rawServer((_c, _r, socket) => socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end')));
    const a = track(new UpstreamClient(upstreamConfig(chunked.origin)));
    const b = track(new UpstreamClient(upstreamConfig(closeDelimited.origin)));
    const text = async (r: Readable) => Buffer.concat(await r.toArray()).toString();
    expect(await text((await a.request(blob())).body)).toBe('part one, part two');
    expect(await text((await b.request(blob())).body)).toBe('until the end');
  });

  it('authenticates with a bearer token, then follows the blob redirect to a CDN without the Authorization header', async () => {
    const cdn = track(await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': 4 });
      res.end('blob');
    }));
    const reg = track(await startTokenRegistry({
      serve: (_req, res, url) => {
        res.writeHead(307, { location: `${cdn.origin}/signed${url.pathname}?sig=1` });
        res.end();
      },
    }));
    const client = track(new UpstreamClient(upstreamConfig(reg.origin)));
    const res = await client.request(blob());
    expect(Buffer.concat(await res.body.toArray()).toString()).toBe('blob');
    expect(res.url).toBe(`${cdn.origin}/signed/v2/r/blobs/sha256:abc?sig=1`);
    expect(reg.registryRequests.map((r) => r.headers.authorization)).toEqual([undefined, 'Bearer tok-1']);
    expect(cdn.requests).toHaveLength(1);
    expect(cdn.requests[0]!.headers.authorization).toBeUndefined();
    expect(cdn.requests[0]!.headers['user-agent']).toBe('ocimirror');
  });

  it('carries consecutive blob GETs on one kept-alive connection', async () => {
    const server = track(await rawServer((_c, _r, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc')));
    const client = track(new UpstreamClient(upstreamConfig(server.origin)));
    for (let i = 0; i < 5; i++) expect(await sha256(await client.request(blob()))).toHaveLength(64);
    expect(server.connections()).toBe(1);
  });

  it('sends a GET again on a new connection when the kept-alive one closes without answering', async () => {
    const server = track(await rawServer((conn, req, socket) => {
      // The first connection answers once, then drops the next request as an idle-timing-out server does.
      if (conn === 0 && req === 1) return void socket.destroy();
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    }));
    const client = track(new UpstreamClient(upstreamConfig(server.origin)));
    const text = async () => Buffer.concat(await (await client.request(blob())).body.toArray()).toString();
    expect(await text()).toBe('ok');
    expect(await text()).toBe('ok');
    expect(server.connections()).toBe(2);
  });

  it('fails a body cut off mid-way with an error, never a clean end', async () => {
    const server = track(await startServer((req, res) => {
      res.writeHead(200, { 'content-length': 1 << 20 });
      res.write(Buffer.alloc(100_000));
      setTimeout(() => req.socket.destroy(), 20);
    }));
    const client = track(new UpstreamClient(upstreamConfig(server.origin)));
    const res = await client.request(blob());
    await expect(sha256(res)).rejects.toThrow(/before the end of the response body/);
  });

  it('reports a malformed response as UNAVAILABLE naming the upstream', async () => {
    const server = track(await rawServer((_c, _r, socket) => socket.end('SPDY/9 banana\r\n\r\n')));
    const client = track(new UpstreamClient(upstreamConfig(server.origin, { name: 'hub' })));
    const err = await rejection(client.request(blob()));
    expect(err.status).toBe(503);
    expect(err.message).toMatch(/upstream hub .* invalid status line/);
  });

  it('throws UNAVAILABLE when nothing listens, and when headers do not come within the timeout', async () => {
    const port = await closedPort();
    const refused = track(new UpstreamClient(upstreamConfig(`http://127.0.0.1:${port}`, { name: 'hub' })));
    expect((await rejection(refused.request(blob()))).message).toMatch(/upstream hub \(127\.0\.0\.1:\d+\) is unreachable: connection refused/);
    const silent = track(await startServer(() => {}));
    const client = track(new UpstreamClient(upstreamConfig(silent.origin)));
    const started = performance.now();
    const err = await rejection(client.request({ ...blob(), timeout: 200 }));
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(err.message).toMatch(/no response headers within 200 ms/);
  });

  it('destroys a streaming body when the caller’s signal aborts', async () => {
    const endless = track(await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': 1 << 30 });
      const timer = setInterval(() => res.write(Buffer.alloc(1024)), 10);
      res.on('close', () => clearInterval(timer));
    }));
    const client = track(new UpstreamClient(upstreamConfig(endless.origin)));
    const ac = new AbortController();
    const res = await client.request({ ...blob(), signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop')), 50);
    await expect(sha256(res)).rejects.toThrow('stop');
  });

  it('reuses released read slabs and never overwrites bytes of chunks still held', async () => {
    const sizes = { a: 3 << 20, b: 3 << 20 };
    const server = track(await startServer((req, res) => {
      const fillByte = req.url!.endsWith('a') ? 0x61 : 0x62;
      const len = fillByte === 0x61 ? sizes.a : sizes.b;
      res.writeHead(200, { 'content-length': len });
      // Several writes, so the client sees many reads.
      for (let sent = 0; sent < len; sent += 256 << 10) res.write(Buffer.alloc(Math.min(256 << 10, len - sent), fillByte));
      res.end();
    }));
    const slabs = new SlabPool();
    const client = track(new UpstreamClient(upstreamConfig(server.origin), { slabs }));
    const held = await (await client.request(blob('sha256:a'))).body.toArray();
    const freeBefore = slabs.freeCount;
    await sha256(await client.request(blob('sha256:b')));
    expect(slabs.freeCount).toBeGreaterThan(freeBefore);
    // The second body's reads went to other slabs: every held byte is still 'a'.
    expect(held.reduce((n, c: Buffer) => n + c.length, 0)).toBe(sizes.a);
    for (const chunk of held as Buffer[]) expect(chunk.every((byte) => byte === 0x61)).toBe(true);
  });
});

describe('UpstreamClient bulk GETs over TLS', () => {
  /** A {@link tlsServer} that answers every request with `body` and records the SNI and ALPN it came with. */
  async function tlsUpstream(body: Buffer) {
    const seen: Array<{ servername: string | false; alpn: string | false | null }> = [];
    const { origin, certFile } = await tlsServer((req, res) => {
      const socket = req.socket as TLSSocket & { servername: string | false };
      seen.push({ servername: socket.servername, alpn: socket.alpnProtocol });
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    });
    return { port: Number(new URL(origin).port), certFile, seen };
  }

  it('checks the upstream certificate: one no trusted CA signed is refused as UNAVAILABLE', async () => {
    const up = await tlsUpstream(Buffer.from('never'));
    const client = track(new UpstreamClient(upstreamConfig(`https://localhost:${up.port}`, { name: 'private' })));
    const err = await rejection(client.request(blob()));
    expect(err.status).toBe(503);
    expect(err.message).toMatch(/upstream private .*self.signed certificate/i);
    expect(up.seen).toEqual([]);
  });

  it('fetches a blob over TLS with SNI and HTTP/1.1 from an upstream whose CA is trusted through NODE_EXTRA_CA_CERTS', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const up = await tlsUpstream(data);
    // NODE_EXTRA_CA_CERTS is read when node starts, so the client runs in a child process.
    const clientModule = fileURLToPath(new URL('../../../../src/upstream/upstream-client.ts', import.meta.url));
    const script = `
      import { createHash } from 'node:crypto';
      import { UpstreamClient } from ${JSON.stringify(clientModule)};
      const client = new UpstreamClient({ name: 'private', url: 'https://localhost:${up.port}', registries: [], tagTTL: 1000, timeout: 5000, bodyTimeout: 5000, fillTimeout: 60000, auth: undefined, realmHosts: [] });
      const res = await client.request({ method: 'GET', repository: 'r', path: 'r/blobs/sha256:abc', bulk: true });
      const hash = createHash('sha256');
      for await (const chunk of res.body) hash.update(chunk);
      console.log(JSON.stringify({ status: res.status, sha256: hash.digest('hex') }));
      await client.close();
    `;
    const child = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, NODE_EXTRA_CA_CERTS: up.certFile }, timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    });
    expect(child.code, child.stderr).toBe(0);
    expect(JSON.parse(child.stdout)).toEqual({ status: 200, sha256: createHash('sha256').update(data).digest('hex') });
    expect(up.seen).toEqual([{ servername: 'localhost', alpn: 'http/1.1' }]);
  });
});

/**
 * A forward proxy as the mirror meets one: absolute-form requests are relayed, CONNECT opens a tunnel.
 * With `credentials`, anything without that Proxy-Authorization gets 407.
 */
async function forwardProxy(credentials?: string) {
  const seen: Array<{ method: string; target: string; proxyAuthorization: string | undefined }> = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method!, target: req.url!, proxyAuthorization: req.headers['proxy-authorization'] });
    if (credentials !== undefined && req.headers['proxy-authorization'] !== credentials) {
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"', 'content-length': 0 });
      return void res.end();
    }
    const { 'proxy-authorization': _, ...headers } = req.headers;
    const out = http.request(req.url!, { method: req.method, headers }, (up) => {
      res.writeHead(up.statusCode!, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket) => {
    seen.push({ method: 'CONNECT', target: req.url!, proxyAuthorization: req.headers['proxy-authorization'] });
    client.on('error', () => {});
    if (credentials !== undefined && req.headers['proxy-authorization'] !== credentials) {
      return void client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n\r\n');
    }
    const [host, port] = [req.url!.slice(0, req.url!.lastIndexOf(':')), Number(req.url!.slice(req.url!.lastIndexOf(':') + 1))];
    const target = net.connect(port, host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      target.pipe(client).pipe(target);
    });
    target.on('error', () => client.destroy());
    sockets.add(target);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  return track(proxy);
}

/** An https server on loopback with a fresh self-signed certificate for 127.0.0.1; `answer` serves each request. */
async function tlsServer(answer: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const dir = await mkdtemp(join(tmpdir(), 'ocimirror-tls-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const [keyFile, certFile] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
  ], { timeout: 20_000 });
  const server = https.createServer({ key: await readFile(keyFile), cert: await readFile(certFile) }, answer);
  const sockets = new Set<net.Socket>();
  server.on('secureConnection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return { origin: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, certFile };
}

describe('UpstreamClient bulk GETs through an egress proxy', () => {
  const egressVia = (url: string) => ({ httpProxy: url, httpsProxy: undefined, noProxy: '' });

  it('asks for an http blob in absolute form, with the proxy credentials, on the proxy connection', async () => {
    const data = randomBytes(2 * 1024 * 1024);
    const origin = track(await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': data.length });
      res.end(data);
    }));
    const fwd = await forwardProxy(basic('alice', 'pw'));
    const client = track(new UpstreamClient(upstreamConfig(origin.origin, { proxy: { url: fwd.url, username: 'alice', password: 'pw' } })));
    expect(await sha256(await client.request(blob()))).toBe(createHash('sha256').update(data).digest('hex'));
    expect(fwd.seen).toEqual([{ method: 'GET', target: `${origin.origin}/v2/r/blobs/sha256:abc`, proxyAuthorization: basic('alice', 'pw') }]);
    expect(origin.requests[0]!.headers['proxy-authorization']).toBeUndefined();
  });

  it('reports a proxy’s 407, to a plain request or to CONNECT, as UNAVAILABLE saying the proxy wants credentials', async () => {
    const fwd = await forwardProxy(basic('alice', 'pw'));
    const plain = track(new UpstreamClient(upstreamConfig('http://127.0.0.1:9', { name: 'hub' }), { egress: egressVia(fwd.url) }));
    const tunnelled = track(new UpstreamClient(upstreamConfig('https://127.0.0.1:9', { name: 'hub' }), { egress: egressVia(fwd.url) }));
    for (const client of [plain, tunnelled]) {
      for (const req of [blob(), { method: 'GET' as const, repository: 'r', path: 'r/manifests/latest' }]) {
        const err = await rejection(client.request(req));
        expect(err.status).toBe(503);
        expect(err.message).toMatch(/upstream hub .*egress proxy wants credentials \(407/);
      }
    }
    expect(fwd.seen.map((s) => s.method)).toEqual(['GET', 'GET', 'CONNECT', 'CONNECT']);
  });

  it('checks the upstream certificate through the tunnel: one no trusted CA signed is refused as UNAVAILABLE', async () => {
    const up = await tlsServer((_req, res) => res.end('never'));
    const fwd = await forwardProxy();
    const client = track(new UpstreamClient(upstreamConfig(up.origin, { name: 'private' }), { egress: egressVia(fwd.url) }));
    const err = await rejection(client.request(blob()));
    expect(err.status).toBe(503);
    expect(err.message).toMatch(/upstream private .*self.signed certificate/i);
    expect(fwd.seen).toEqual([{ method: 'CONNECT', target: new URL(up.origin).host, proxyAuthorization: undefined }]);
  });

  it('streams a blob through a CONNECT tunnel byte for byte, and fails one cut off mid-way (CA trusted through NODE_EXTRA_CA_CERTS)', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const up = await tlsServer((req, res) => {
      if (req.url!.includes('cut')) {
        res.writeHead(200, { 'content-length': data.length });
        res.write(data.subarray(0, 100_000));
        return void setTimeout(() => req.socket.destroy(), 20);
      }
      res.writeHead(200, { 'content-length': data.length });
      res.end(data);
    });
    const fwd = await forwardProxy(basic('alice', 'pw'));
    const clientModule = fileURLToPath(new URL('../../../../src/upstream/upstream-client.ts', import.meta.url));
    const script = `
      import { createHash } from 'node:crypto';
      import { UpstreamClient } from ${JSON.stringify(clientModule)};
      const client = new UpstreamClient({ name: 'private', url: ${JSON.stringify(up.origin)}, registries: [], tagTTL: 1000, timeout: 5000, bodyTimeout: 5000, fillTimeout: 60000, auth: undefined, realmHosts: [], proxy: undefined },
        { egress: { httpProxy: undefined, httpsProxy: ${JSON.stringify(fwd.url.replace('http://', 'http://alice:pw@'))}, noProxy: '' } });
      const out = {};
      const res = await client.request({ method: 'GET', repository: 'r', path: 'r/blobs/sha256:whole', bulk: true });
      const hash = createHash('sha256');
      for await (const chunk of res.body) hash.update(chunk);
      out.whole = { status: res.status, sha256: hash.digest('hex') };
      try {
        const cut = await client.request({ method: 'GET', repository: 'r', path: 'r/blobs/sha256:cut', bulk: true });
        for await (const chunk of cut.body) void chunk;
        out.cut = 'ended cleanly';
      } catch (err) {
        out.cut = err.message;
      }
      console.log(JSON.stringify(out));
      await client.close();
    `;
    const child = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, NODE_EXTRA_CA_CERTS: up.certFile }, timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    });
    expect(child.code, child.stderr).toBe(0);
    const out = JSON.parse(child.stdout) as { whole: unknown; cut: string };
    expect(out.whole).toEqual({ status: 200, sha256: createHash('sha256').update(data).digest('hex') });
    expect(out.cut).toMatch(/before the end of the response body/);
    expect(fwd.seen.every((s) => s.method === 'CONNECT' && s.proxyAuthorization === basic('alice', 'pw'))).toBe(true);
    expect(fwd.seen.length).toBeGreaterThan(0);
  });
});
