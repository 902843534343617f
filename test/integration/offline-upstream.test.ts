/**
 * @module test/integration/offline-upstream
 * An upstream marked `offline: true` is never contacted: cached content is served by its
 * original names with tags that never expire, a miss fails at once with a message naming the
 * offline upstream, and the admin API and the metrics say so, with how many tags are stale.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { get, pullImage } from '../helpers/pull.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { TestClock } from '../helpers/clock.ts';

const ADMIN_TOKEN = 'offline-admin-token-0123456789';

describeWithTools(['docker-registry'], 'an offline upstream', () => {
  let upstream: Upstream;
  let dataDir: string;
  let m: TestMirror;
  const clock = new TestClock();

  beforeAll(async () => {
    upstream = await startUpstream();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ocimirror-offline-'));
    // Warm the cache online, then serve the same data directory with the upstream marked offline.
    const online = await startTestMirror(mirrorConfig(upstream.url), { dataDir, clock });
    await pullImage(online.url, upstream.fixtures, upstream.fixtures.image('small'));
    await online.stop();
    m = await startTestMirror(mirrorConfig(upstream.url, { upstream: { offline: true }, admin: { token: ADMIN_TOKEN } } as never), { dataDir, clock });
    upstream.proxy.reset();
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('serves cached images with tags that never expire and never dials the upstream', async () => {
    clock.advance(30 * 86_400_000); // far past the tag TTL
    await pullImage(m.url, upstream.fixtures, upstream.fixtures.image('small'));
    const { res, body } = await get(`${m.url}/v2/small/manifests/${upstream.fixtures.image('small').tags[0]}`, { accept: MANIFEST_ACCEPT });
    expect(res.status, body.toString()).toBe(200);
    expect(res.headers.get('x-cache')).toBe('HIT');
    expect(upstream.proxy.records).toEqual([]);
  });

  it('fails a miss at once with a message naming the offline upstream', async () => {
    const { res, body } = await get(`${m.url}/v2/medium/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(res.status).toBe(503);
    expect(JSON.parse(body.toString()).errors[0].message).toContain('offline');
    expect(upstream.proxy.records).toEqual([]);
  });

  it('says in the admin API and the metrics that the upstream is offline and which tags are stale', async () => {
    const res = await fetch(`${m.url}/admin/v1/upstreams`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const { upstreams } = (await res.json()) as { upstreams: Array<{ name: string; offline: boolean; staleTags: number }> };
    // The clock moved 30 days past the cached tag's confirmation: it is stale, and still served.
    expect(upstreams.find((u) => u.name === 'test')).toMatchObject({ offline: true, staleTags: 1 });
    const metrics = await (await fetch(`${m.url}/metrics`)).text();
    expect(metrics).toMatch(/^ocimirror_upstream_offline\{upstream="test"\} 1$/m);
    expect(metrics).toMatch(/^ocimirror_upstream_stale_tags\{upstream="test"\} 1$/m);
  });
});
