/**
 * The mirror behind a real forward proxy (tinyproxy): every upstream request goes through it — plain
 * http in absolute form, https through CONNECT — token requests and redirects to storage hosts
 * included; NO_PROXY hosts go direct; the proxy's credentials go along and never show up elsewhere.
 * tinyproxy's own log is the witness of what went through it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startForwardProxy, type ForwardProxy, type ProxiedRequest } from '../helpers/forward-proxy.ts';
import { CLI_ARGS, mirrorConfig, spawnServe, startTestMirror, type SpawnedMirror, type TestMirror } from '../helpers/mirror.ts';
import { get, pullImage } from '../helpers/pull.ts';
import { localImageDigests, skopeoCopy } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';

const PROXY_USER = 'mirror-egress';
const PROXY_PASSWORD = 'egress-secret-7d1f';

describeWithTools(['docker-registry', 'tinyproxy', 'openssl', 'skopeo'], 'upstream requests through an egress proxy', () => {
  let tokenUp: Upstream;
  let plainUp: Upstream;
  const stops: Array<() => Promise<unknown>> = [];
  const track = <T extends { stop(): Promise<unknown> }>(thing: T): T => {
    stops.push(() => thing.stop());
    return thing;
  };
  const proxy = async (opts?: Parameters<typeof startForwardProxy>[0]): Promise<ForwardProxy> => track(await startForwardProxy(opts));
  const mirror = async (raw: Parameters<typeof startTestMirror>[0], env: NodeJS.ProcessEnv = {}): Promise<TestMirror> => track(await startTestMirror(raw, { env }));
  const line = (r: ProxiedRequest) => `${r.method} ${r.target}`;

  beforeAll(async () => {
    const [a, b] = await Promise.allSettled([startUpstream({ auth: 'token' }), startUpstream({ largeBytes: 1 << 20 })]);
    if (a.status === 'fulfilled') tokenUp = a.value;
    if (b.status === 'fulfilled') plainUp = b.value;
    if (a.status === 'rejected') throw a.reason;
    if (b.status === 'rejected') throw b.reason;
  });

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await Promise.allSettled([tokenUp?.stop(), plainUp?.stop()]);
  });

  it('sends manifests, HEADs, tag lists, token requests and blob bodies through the proxy in absolute form, and serves the pull', async () => {
    const fwd = await proxy();
    const { username, password } = tokenUp.registry.credentials!;
    const m = await mirror(
      mirrorConfig(tokenUp.url, { egress: { httpProxy: fwd.url }, upstream: { auth: { username, passwordEnv: 'UP_PASSWORD' } } }),
      { UP_PASSWORD: password },
    );
    tokenUp.proxy.reset();
    await pullImage(m.url, tokenUp.fixtures, tokenUp.fixtures.image('multi'));
    // A blob nothing pulled yet: the mirror asks the upstream.
    const large = tokenUp.fixtures.image('large');
    const head = await get(`${m.url}/v2/large/blobs/${large.manifest.layers[0]!.digest}`, {}, 'HEAD');
    expect(head.res.status).toBe(200);
    const tags = await get(`${m.url}/v2/small/tags/list`);
    expect(tags.res.status).toBe(200);

    const proxied = (await fwd.requests()).map(line);
    const upstream = tokenUp.proxy.records.map((r) => `${r.method} ${tokenUp.url}${r.path}`);
    // Every request the upstream received came through the proxy (as many times as it arrived), and each kind is among them.
    const unproxied = [...proxied];
    const direct = upstream.filter((r) => {
      const i = unproxied.indexOf(r);
      if (i >= 0) unproxied.splice(i, 1);
      return i < 0;
    });
    expect(direct, await fwd.log()).toEqual([]);
    expect(upstream.some((r) => r.startsWith('GET ') && r.includes('/manifests/'))).toBe(true);
    expect(upstream.some((r) => r.startsWith('GET ') && r.includes('/blobs/'))).toBe(true);
    expect(upstream.some((r) => r.startsWith('HEAD ') && r.includes('/blobs/'))).toBe(true);
    expect(upstream.some((r) => r.includes('/tags/list'))).toBe(true);
    expect(proxied.some((r) => r.startsWith(`GET ${tokenUp.registry.tokenIssuer!.realm}?`)), proxied.join('\n')).toBe(true);
  });

  it('follows a blob redirect to a storage host through the proxy too', async () => {
    const fwd = await proxy();
    const m = await mirror(mirrorConfig(plainUp.url, { egress: { httpProxy: fwd.url } }));
    const layer = plainUp.fixtures.image('medium').manifest.layers[0]!;
    // The registry itself, on another origin than the fault proxy, plays the storage host.
    const storage = `${plainUp.registry.url}/v2/medium/blobs/${layer.digest}?signature=s1`;
    plainUp.proxy.status(307, { location: storage }, { method: 'GET', pathIncludes: `/blobs/${layer.digest}`, times: 1 });
    try {
      const blob = await get(`${m.url}/v2/medium/blobs/${layer.digest}`);
      expect(blob.res.status).toBe(200);
      expect(blob.body.length).toBe(layer.size);
    } finally {
      plainUp.proxy.clear();
    }
    const seen = (await fwd.requests()).map(line);
    expect(seen).toContain(`GET ${plainUp.url}/v2/medium/blobs/${layer.digest}`);
    expect(seen).toContain(`GET ${storage}`);
  });

  it('goes direct to NO_PROXY hosts: the proxy sees none of their requests', async () => {
    const fwd = await proxy();
    const m = await mirror(mirrorConfig(plainUp.url, { egress: { httpProxy: fwd.url, httpsProxy: fwd.url, noProxy: 'example.invalid, 127.0.0.1' } }));
    plainUp.proxy.reset();
    await pullImage(m.url, plainUp.fixtures, plainUp.fixtures.image('small'));
    expect(plainUp.proxy.records.length).toBeGreaterThan(0);
    expect(await fwd.requests()).toEqual([]);
  });

  it('answers 503 naming the egress proxy when it wants credentials the mirror does not have', async () => {
    const fwd = await proxy({ basicAuth: { username: PROXY_USER, password: PROXY_PASSWORD } });
    const m = await mirror(mirrorConfig(plainUp.url, { upstream: { proxy: { url: fwd.url } } }));
    const res = await get(`${m.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(res.res.status).toBe(503);
    const body = JSON.parse(res.body.toString()) as { errors: Array<{ code: string; message: string }> };
    expect(body.errors[0]!.code).toBe('UNAVAILABLE');
    expect(body.errors[0]!.message).toMatch(/egress proxy .*407/);
  });

  describe('over https, through CONNECT', () => {
    let dir: string;
    let terminator: tls.Server;
    let tlsOrigin: string;
    /** Connections the TLS terminator accepted: each one through the proxy is one CONNECT in its log. */
    let tlsConnections = 0;

    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-egress-tls-'));
      const [keyFile, certFile] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
      await promisify(execFile)('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
      ], { timeout: 20_000 });
      // TLS in front of the upstream (its fault proxy, so requests are still counted).
      const target = new URL(plainUp.url);
      terminator = tls.createServer({ key: await readFile(keyFile), cert: await readFile(certFile) }, (socket) => {
        tlsConnections++;
        const upstream = net.connect(Number(target.port), target.hostname);
        socket.on('error', () => upstream.destroy());
        upstream.on('error', () => socket.destroy());
        socket.pipe(upstream).pipe(socket);
      });
      await new Promise<void>((resolve) => terminator.listen(0, '127.0.0.1', resolve));
      tlsOrigin = `https://127.0.0.1:${(terminator.address() as net.AddressInfo).port}`;
    });

    afterAll(async () => {
      await new Promise<void>((resolve) => (terminator ? terminator.close(() => resolve()) : resolve()));
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    /** `ocimirror serve` as its own process, trusting the test CA through NODE_EXTRA_CA_CERTS (read at start-up). */
    async function spawnMirrorTrusting(raw: object, env: NodeJS.ProcessEnv): Promise<SpawnedMirror> {
      const dataDir = await mkdtemp(path.join(dir, 'data-'));
      const file = `${dataDir}.yaml`;
      await writeFile(file, stringify({ ...raw, storage: { path: dataDir } }));
      const m = await spawnServe([...CLI_ARGS, 'serve', '--config', file], {
        env: { NODE_EXTRA_CA_CERTS: path.join(dir, 'cert.pem'), OCIMIRROR_LOG_LEVEL: 'debug', ...env },
      });
      stops.push(async () => {
        m.kill('SIGTERM');
        await Promise.race([m.exited, new Promise((r) => setTimeout(r, 10_000))]);
        m.kill('SIGKILL');
      });
      return m;
    }

    it('pulls an image with skopeo through a CONNECT tunnel, with the proxy credentials sent and never logged or answered', async () => {
      const fwd = await proxy({ basicAuth: { username: PROXY_USER, password: PROXY_PASSWORD } });
      const raw = mirrorConfig(tlsOrigin, { upstream: { proxy: { url: fwd.url, username: PROXY_USER, passwordEnv: 'EGRESS_PROXY_PASSWORD' } } });
      const m = await spawnMirrorTrusting(raw, { EGRESS_PROXY_PASSWORD: PROXY_PASSWORD });
      plainUp.proxy.reset();
      tlsConnections = 0;
      const image = plainUp.fixtures.image('large');
      const dest = await mkdtemp(path.join(dir, 'pull-'));
      await skopeoCopy(`docker://${new URL(m.url).host}/${image.repo}:latest`, `dir:${dest}`, { retryTimes: 0 });
      const local = await localImageDigests(`dir:${dest}`);
      expect(local.digest).toBe(image.manifest.digest);
      expect(local.missing).toEqual([]);

      const requests = await fwd.requests();
      const authority = new URL(tlsOrigin).host;
      // Only tunnels: the proxy never saw a request line of the upstream's, and never a plain one.
      expect(requests.length).toBeGreaterThan(0);
      expect(requests.every((r) => r.method === 'CONNECT' && r.target === authority), requests.map(line).join('\n')).toBe(true);
      // No connection reached the upstream but through a tunnel.
      expect(tlsConnections).toBe(requests.length);
      expect(plainUp.proxy.count({ method: 'GET', pathIncludes: '/blobs/' })).toBeGreaterThan(0);

      const metrics = await get(`${m.url}/metrics`);
      const secrets = [PROXY_PASSWORD, Buffer.from(`${PROXY_USER}:${PROXY_PASSWORD}`).toString('base64')];
      for (const secret of secrets) {
        expect(m.output()).not.toContain(secret);
        expect(metrics.body.toString()).not.toContain(secret);
      }
    });
  });
});
