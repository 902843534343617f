/**
 * @module test/integration/failover
 * An upstream with two URLs, each a real docker-registry behind a fault proxy: the first down,
 * pulls are served by the second and the admin API and metrics say so; once the back-off is over
 * the first is tried again. And the rate-limit budget: a registry-like server sending
 * RateLimit headers, its remaining count exported, and background prefetch waiting (without
 * spending attempts) while it is under the floor, client pulls still served.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RawConfig } from '../../src/config/schema.ts';
import { TestClock } from '../helpers/clock.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { get, pullImage } from '../helpers/pull.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { waitFor } from '../helpers/wait.ts';

const TOKEN = 'failover-test-admin-token-0123456789';

async function admin(base: string, method: string, apiPath: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${base}/admin/v1${apiPath}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: await res.json() };
}

async function upstreamView(base: string, name: string): Promise<any> {
  const { status, json } = await admin(base, 'GET', '/upstreams');
  expect(status).toBe(200);
  return (json.upstreams as Array<{ name: string }>).find((u) => u.name === name);
}

async function metrics(base: string): Promise<string> {
  return (await get(`${base}/metrics`)).body.toString('utf8');
}

describeWithTools(['docker-registry'], 'an upstream with several URLs', () => {
  let first: Upstream;
  let second: Upstream;
  let m: TestMirror;
  const clock = new TestClock();

  beforeAll(async () => {
    [first, second] = await Promise.all([startUpstream(), startUpstream()]);
    const raw = {
      listen: '127.0.0.1:0',
      upstreams: [{ name: 'test', urls: [first.url, second.url], registries: ['registry.test'], tagTTL: '1h', failover: { backoff: '30s' } }],
      defaultUpstream: 'test',
      prefetch: { onPull: false },
      admin: { token: TOKEN },
    } as RawConfig;
    m = await startTestMirror(raw, { clock });
  });
  afterAll(async () => {
    await m?.stop();
    await Promise.all([first?.stop(), second?.stop()]);
  });

  it('serves pulls from the second URL while the first is down, and shows which one serves', async () => {
    await first.proxy.down();
    const image = second.fixtures.image('small');
    await pullImage(m.url, second.fixtures, image);
    expect(second.proxy.count()).toBeGreaterThan(0);
    expect(first.proxy.count()).toBe(0);

    const view = await upstreamView(m.url, 'test');
    expect(view.activeUrl).toBe(second.url);
    expect(view.urls.map((u: { url: string; state: string }) => [u.url, u.state])).toEqual([
      [first.url, 'down'],
      [second.url, 'up'],
    ]);
    expect(view.urls[0].lastError).toContain('unreachable');
    const text = await metrics(m.url);
    expect(text).toContain(`ocimirror_upstream_active_url{upstream="test",url="${second.url}"} 1`);
    expect(text).toContain(`ocimirror_upstream_active_url{upstream="test",url="${first.url}"} 0`);
  });

  it('keeps skipping the first URL during the back-off and tries it first again after it', async () => {
    await first.proxy.up();
    second.proxy.reset();
    await pullImage(m.url, second.fixtures, second.fixtures.image('medium'));
    expect(first.proxy.count()).toBe(0);
    expect(second.proxy.count()).toBeGreaterThan(0);

    clock.advance(30_000);
    second.proxy.reset();
    await pullImage(m.url, first.fixtures, first.fixtures.image('multi'));
    expect(first.proxy.count()).toBeGreaterThan(0);
    expect(second.proxy.count()).toBe(0);
    const view = await upstreamView(m.url, 'test');
    expect(view.activeUrl).toBe(first.url);
    expect(view.urls.map((u: { state: string }) => u.state)).toEqual(['up', 'up']);
  });

  it('fails over on a 5xx answer but not on a 404', async () => {
    first.proxy.reset();
    second.proxy.reset();
    const { res } = await get(`${m.url}/v2/no/such/repo/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(res.status).toBe(404);
    expect(second.proxy.count()).toBe(0);

    first.proxy.status(503, {}, { pathIncludes: '/manifests/' });
    try {
      await pullImage(m.url, second.fixtures, second.fixtures.image('library/alpine'));
    } finally {
      first.proxy.clear();
    }
    expect(second.proxy.count({ pathIncludes: '/manifests/' })).toBeGreaterThan(0);
    expect((await upstreamView(m.url, 'test')).activeUrl).toBe(second.url);
  });
});

/** A registry-like server: one manifest at `/v2/app/manifests/<tag>`, with RateLimit headers whose remaining count the test sets. */
async function startRateLimitedRegistry() {
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 2 },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'b'.repeat(64)}`, size: 3 }],
    }),
  );
  const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  const state = { remaining: 100, requests: [] as string[] };
  const server = http.createServer((req, res) => {
    state.requests.push(`${req.method} ${req.url}`);
    const limits = { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': `${state.remaining};w=21600` };
    if (req.url === '/v2/' || req.url === '/v2') {
      res.writeHead(200, { 'content-type': 'application/json', ...limits });
      res.end('{}');
    } else if (/^\/v2\/app\/manifests\//.test(req.url ?? '')) {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': manifest.length, 'docker-content-digest': digest, ...limits });
      res.end(req.method === 'HEAD' ? undefined : manifest);
    } else {
      res.writeHead(404, { 'content-type': 'application/json', ...limits });
      res.end(JSON.stringify({ errors: [{ code: 'NOT_FOUND', message: 'not here' }] }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    digest,
    state,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

describe('the rate-limit budget', () => {
  let reg: Awaited<ReturnType<typeof startRateLimitedRegistry>>;
  let m: TestMirror;

  beforeAll(async () => {
    reg = await startRateLimitedRegistry();
    const raw = {
      listen: '127.0.0.1:0',
      upstreams: [{ name: 'hub', url: reg.url, registries: ['registry.test'], tagTTL: '1h', rateLimitFloor: 10 }],
      defaultUpstream: 'hub',
      prefetch: { onPull: false },
      admin: { token: TOKEN },
    } as RawConfig;
    m = await startTestMirror(raw);
  });
  afterAll(async () => {
    await m?.stop();
    await reg?.close();
  });

  it('exports the remaining count, and holds background prefetch while it is under the floor while client pulls go on', async () => {
    reg.state.remaining = 5;
    const pulled = await get(`${m.url}/v2/app/manifests/v1`, { accept: MANIFEST_ACCEPT });
    expect(pulled.res.status).toBe(200);
    expect(pulled.res.headers.get('docker-content-digest')).toBe(reg.digest);
    const text = await metrics(m.url);
    expect(text).toContain('ocimirror_upstream_ratelimit_remaining{upstream="hub"} 5');
    expect(text).toContain('ocimirror_upstream_ratelimit_limit{upstream="hub"} 100');
    const view = await upstreamView(m.url, 'hub');
    expect(view.rateLimit).toMatchObject({ limit: 100, remaining: 5, windowSeconds: 21600, floor: 10 });
    expect(view.rateLimit.backgroundPausedUntil).not.toBeNull();

    const before = reg.state.requests.length;
    const queued = await admin(m.url, 'POST', '/prefetch', { images: ['registry.test/app:v2'] });
    expect(queued.status).toBeLessThan(300);
    const id = queued.json.jobs[0].id as number;
    const job = await waitFor('the prefetch job to be deferred', async () => {
      const j = (await admin(m.url, 'GET', `/jobs/${id}`)).json;
      return j.lastError ? j : undefined;
    }, 10_000);
    expect(job).toMatchObject({ state: 'queued', attempts: 0 });
    expect(job.lastError).toContain('rateLimitFloor');
    expect(reg.state.requests.length).toBe(before);

    // A client pull is never held back by the floor.
    const again = await get(`${m.url}/v2/app/manifests/v3`, { accept: MANIFEST_ACCEPT });
    expect(again.res.status).toBe(200);
  });
});
