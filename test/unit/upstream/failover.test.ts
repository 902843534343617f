import { describe, expect, it } from 'vitest';
import { text } from 'node:stream/consumers';
import { RegistryError } from '../../../src/registry/errors.ts';
import { UpstreamClient } from '../../../src/upstream/upstream-client.ts';
import { createUpstreams } from '../../../src/upstream/upstream-pool.ts';
import { basic, cleanupAfterEach, closedPort, json, startServer, upstreamConfig } from './fake-http.ts';

const { cleanup, track } = cleanupAfterEach();

const manifest = { method: 'GET', repository: 'library/alpine', path: 'library/alpine/manifests/latest' } as const;

/** A registry that answers every manifest GET with `status` and the given headers. */
function registry(status = 200, headers: Record<string, string> = {}) {
  return startServer((_req, res) => json(res, status, status < 400 ? { schemaVersion: 2 } : { errors: [{ code: 'X' }] }, headers));
}

function testClock() {
  let t = 10_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function client(urls: string[], now: () => number, extra: Parameters<typeof upstreamConfig>[1] = {}) {
  return track(new UpstreamClient(upstreamConfig(urls[0] as string, { urls, failover: { backoff: 30_000 }, ...extra }), { now }));
}

describe('UpstreamClient failover across urls', () => {
  it('serves from the next URL when the first refuses connections, and reports which one serves', async () => {
    const down = `http://127.0.0.1:${await closedPort()}`;
    const second = track(await registry());
    const c = client([down, second.origin], testClock().now);
    const res = await c.request(manifest);
    expect(res.status).toBe(200);
    expect(res.url).toBe(`${second.origin}/v2/library/alpine/manifests/latest`);
    await text(res.body);
    const status = c.status();
    expect(status.activeUrl).toBe(second.origin);
    expect(status.urls.map((u) => u.state)).toEqual(['down', 'up']);
    expect(status.urls[0]?.lastError).toContain('unreachable');
  });

  it('skips the failed URL during the back-off and tries it first again after it', async () => {
    const clock = testClock();
    const flaky = track(await registry(503));
    const second = track(await registry());
    const c = client([flaky.origin, second.origin], clock.now);
    await text((await c.request(manifest)).body);
    expect(flaky.requests).toHaveLength(1);
    await text((await c.request(manifest)).body);
    expect(flaky.requests).toHaveLength(1);
    expect(second.requests).toHaveLength(2);
    clock.advance(30_000);
    expect(c.status().activeUrl).toBe(flaky.origin);
    await text((await c.request(manifest)).body);
    expect(flaky.requests).toHaveLength(2);
  });

  it('answers 5xx to the caller when the last URL to try answers 5xx', async () => {
    const first = track(await registry(502));
    const second = track(await registry(503));
    const c = client([first.origin, second.origin], testClock().now);
    const res = await c.request(manifest);
    expect(res.status).toBe(503);
    await text(res.body);
    expect(c.status().urls.map((u) => u.state)).toEqual(['down', 'down']);
  });

  it('does not fail over on 404 or 401: those answers would be the same on a mirror', async () => {
    for (const status of [404, 401]) {
      const first = track(await registry(status));
      const second = track(await registry());
      const c = client([first.origin, second.origin], testClock().now);
      const res = await c.request(manifest);
      await text(res.body);
      expect(res.status).toBe(status);
      expect(second.requests).toHaveLength(0);
      expect(c.status().activeUrl).toBe(first.origin);
    }
  });

  it('throws UNAVAILABLE when no URL answers, counting one error per request', async () => {
    const a = `http://127.0.0.1:${await closedPort()}`;
    const b = `http://127.0.0.1:${await closedPort()}`;
    const c = client([a, b], testClock().now);
    const err = await c.request(manifest).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).code).toBe('UNAVAILABLE');
    expect(c.counters.errors).toBe(1);
  });

  it('does not mark a URL failed when the caller aborts', async () => {
    const slow = track(await startServer(() => {}));
    const second = track(await registry());
    const c = client([slow.origin, second.origin], testClock().now);
    const controller = new AbortController();
    const pending = c.request({ ...manifest, signal: controller.signal });
    setImmediate(() => controller.abort(new Error('client left')));
    await expect(pending).rejects.toThrow('client left');
    expect(c.status().urls[0]?.state).toBe('up');
    expect(second.requests).toHaveLength(0);
  });

  it('sends the same credentials to every URL', async () => {
    const down = `http://127.0.0.1:${await closedPort()}`;
    const second = track(
      await startServer((req, res) => {
        if (req.headers.authorization === basic('me', 'pw')) json(res, 200, { schemaVersion: 2 });
        else json(res, 401, { errors: [{ code: 'UNAUTHORIZED' }] }, { 'www-authenticate': 'Basic realm="registry"' });
      }),
    );
    const c = client([down, second.origin], testClock().now, { auth: { username: 'me', password: 'pw' } });
    const res = await c.request(manifest);
    await text(res.body);
    expect(res.status).toBe(200);
    expect(second.requests.at(-1)?.headers.authorization).toBe(basic('me', 'pw'));
  });
});

describe('UpstreamClient rate-limit budget', () => {
  it('reads RateLimit headers from registry answers and pauses background work under the floor', async () => {
    const clock = testClock();
    const hub = track(await registry(200, { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '7;w=21600' }));
    const c = client([hub.origin], clock.now, { rateLimitFloor: 10 });
    expect(c.backgroundPausedUntil()).toBeUndefined();
    await text((await c.request(manifest)).body);
    expect(c.status().rateLimit).toEqual({ limit: 100, remaining: 7, windowSeconds: 21600, observedAt: clock.now() });
    expect(c.backgroundPausedUntil()).toBe(clock.now() + 21_600_000);
  });

  it('never pauses background work with a floor of 0', async () => {
    const hub = track(await registry(200, { 'ratelimit-remaining': '0;w=21600' }));
    const c = client([hub.origin], testClock().now, { rateLimitFloor: 0 });
    await text((await c.request(manifest)).body);
    expect(c.status().rateLimit.remaining).toBe(0);
    expect(c.backgroundPausedUntil()).toBeUndefined();
  });

  it('reports every upstream’s status through the pool for metrics', async () => {
    const hub = track(await registry(200, { 'ratelimit-remaining': '42;w=60' }));
    const pool = createUpstreams([upstreamConfig(hub.origin)]);
    cleanup.push(() => pool.closeAll());
    await text(((await pool.get('test-up')?.request(manifest)) as { body: NodeJS.ReadableStream & import('node:stream').Readable }).body);
    expect(pool.counters()['test-up']?.status).toMatchObject({ activeUrl: hub.origin, rateLimit: { remaining: 42, windowSeconds: 60 } });
  });
});
