/**
 * Faults between the mirror and a real upstream: a connection cut mid-blob, corrupt bytes, the
 * upstream going down with and without a cached tag, tags that expire and move, and malformed
 * client input. Each must end in a clear OCI error (or an aborted connection, never a clean end
 * to a wrong body) and leave nothing corrupt in the cache.
 */
import { readdir } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { rawGet } from '../helpers/raw-get.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { pushFixtures } from '../helpers/push.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { get, sha256 } from '../helpers/pull.ts';
import { waitFor } from '../helpers/wait.ts';
import { TestClock } from '../helpers/clock.ts';
import { STALE_RETRY_MS } from '../../src/proxy/manifest-proxy.ts';
import type { Mirror } from '../../src/mirror.ts';

/** The faults suite's tagTTL, passed by advancing the mirror's clock rather than by sleeping. */
const TAG_TTL_MS = 60_000;

/** Waits until no fill is running and no temp file is left: a failed fill removes its own. */
async function fillsSettled(mirror: Mirror): Promise<void> {
  await waitFor('running fills to end', () => mirror.storage.blobs.activeFills === 0, 10_000, 10);
  await waitFor('temp files to be removed', async () => (await readdir(mirror.storage.paths.tmp)).length === 0, 10_000, 10);
}

/** A HEAD over node:http with the target exactly as written: status, headers, and the body bytes that came (must be 0). */
function rawHead(base: string, rawPath: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: number }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path: rawPath, method: 'HEAD', headers }, (res) => {
      let body = 0;
      res.on('data', (c: Buffer) => (body += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function errorOf(url: string, headers: Record<string, string> = {}) {
  const { res, body } = await get(url, headers);
  return { status: res.status, error: JSON.parse(body.toString()).errors[0] as { code: string; message: string } };
}

/** Every file under the data dir except SQLite's own, relative. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && !entry.name.startsWith('ocimirror.db')) out.push(path.relative(dir, path.join(entry.parentPath, entry.name)));
  }
  return out.sort();
}

describeWithTools(['docker-registry'], 'faults between the mirror and its upstream', () => {
  let upstream: Upstream;
  let m: TestMirror;
  const clock = new TestClock();

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url, { upstream: { tagTTL: `${TAG_TTL_MS}ms`, timeout: '2s' } }), { clock });
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
  });
  afterEach(async () => {
    upstream.proxy.clear();
    await upstream.proxy.up();
    upstream.proxy.reset();
  });

  function expectNotCached(digest: string) {
    expect(m.mirror.storage.metadata.getBlob(digest)).toBeUndefined();
  }

  for (const fault of ['cut', 'corrupt'] as const) {
    it(`aborts every client and commits nothing when the upstream ${fault === 'cut' ? 'drops mid-blob' : 'sends corrupt bytes'}, then refetches whole`, async () => {
      // A different blob per fault: the first test leaves its blob cached.
      const repo = fault === 'cut' ? 'large' : 'medium';
      const blob = upstream.fixtures.image(repo).manifest.layers[0]!;
      const url = `${m.url}/v2/${repo}/blobs/${blob.digest}`;
      if (fault === 'cut') upstream.proxy.cutAfter(Math.floor(blob.size / 2), { pathIncludes: blob.digest });
      else upstream.proxy.corrupt({ pathIncludes: blob.digest });
      const attempts = await Promise.allSettled(Array.from({ length: 3 }, () => get(url)));
      for (const a of attempts) {
        // Either the headers never came (an OCI error) or the body was cut: never a full 200 body.
        if (a.status === 'fulfilled') expect(a.value.res.status).not.toBe(200);
        else expect(`${a.reason} ${(a.reason as Error).cause ?? ''}`).toMatch(/terminated|socket|closed|aborted|fetch failed|reset/i);
      }
      await fillsSettled(m.mirror);
      expectNotCached(blob.digest);
      expect(await readdir(m.mirror.storage.paths.tmp)).toEqual([]);
      expect(await filesUnder(m.dataDir)).not.toContain(expect.stringContaining(blob.digest.slice(7)));

      upstream.proxy.clear();
      const attempted = upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest });
      expect(attempted).toBeGreaterThanOrEqual(1);
      const again = await get(url);
      expect(again.res.status).toBe(200);
      expect(sha256(again.body)).toBe(blob.digest);
      expect(upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(attempted + 1);
      await waitFor('the blob to be committed', () => m.mirror.storage.metadata.getBlob(blob.digest));
      expect(m.mirror.storage.metadata.getBlob(blob.digest)?.size).toBe(blob.size);
    });
  }

  it('serves a cached tag as STALE while the upstream is down, and a clear 503 for what it never cached', async () => {
    const image = upstream.fixtures.image('medium');
    const first = await get(`${m.url}/v2/medium/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(first.res.headers.get('x-cache')).toBe('MISS');
    clock.advance(TAG_TTL_MS);
    await upstream.proxy.down();
    const stale = await get(`${m.url}/v2/medium/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(stale.res.status).toBe(200);
    expect(stale.res.headers.get('x-cache')).toBe('STALE');
    expect(stale.res.headers.get('docker-content-digest')).toBe(image.manifest.digest);
    expect(stale.body.equals(image.manifest.bytes)).toBe(true);

    const never = await errorOf(`${m.url}/v2/many/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(never.status).toBe(503);
    expect(never.error.code).toBe('UNAVAILABLE');
    expect(never.error.message).toContain('upstream test');
    const blob = await errorOf(`${m.url}/v2/many/blobs/${upstream.fixtures.image('many').manifest.layers[0]!.digest}`);
    expect(blob.status).toBe(503);
  });

  it('asks a failing upstream about an expired tag at most once per backoff, serving STALE in between', async () => {
    await get(`${m.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT });
    clock.advance(TAG_TTL_MS);
    upstream.proxy.status(503, {}, { pathIncludes: '/manifests/' });
    upstream.proxy.reset();
    const caches: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { res } = await get(`${m.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT });
      caches.push(`${res.status} ${res.headers.get('x-cache')}`);
    }
    expect(caches).toEqual(Array(5).fill('200 STALE'));
    expect(upstream.proxy.count({ pathIncludes: '/manifests/' })).toBe(1);
    clock.advance(STALE_RETRY_MS - 1);
    const within = await get(`${m.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(within.res.headers.get('x-cache')).toBe('STALE');
    expect(upstream.proxy.count({ pathIncludes: '/manifests/' })).toBe(1);
    clock.advance(1); // the backoff is over: the next request asks again
    const again = await get(`${m.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(again.res.headers.get('x-cache')).toBe('STALE');
    expect(upstream.proxy.count({ pathIncludes: '/manifests/' })).toBe(2);
    upstream.proxy.clear(); // the upstream is back; the tag is fresh again once the backoff is over
    clock.advance(STALE_RETRY_MS);
    const back = await get(`${m.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(back.res.headers.get('x-cache')).toBe('HIT');
  });

  it('lists cached tags when the upstream is down', async () => {
    await get(`${m.url}/v2/small/manifests/v1`, { accept: MANIFEST_ACCEPT });
    await get(`${m.url}/v2/small/manifests/v2`, { accept: MANIFEST_ACCEPT });
    await upstream.proxy.down();
    const { res, body } = await get(`${m.url}/v2/small/tags/list`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-cache')).toBe('STALE');
    expect(JSON.parse(body.toString()).tags).toEqual(expect.arrayContaining(['v1', 'v2']));
  });

  it('revalidates an expired tag with a HEAD and no GET when it has not moved', async () => {
    await get(`${m.url}/v2/multi/manifests/latest`, { accept: MANIFEST_ACCEPT });
    clock.advance(TAG_TTL_MS);
    upstream.proxy.reset();
    const again = await get(`${m.url}/v2/multi/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(again.res.headers.get('x-cache')).toBe('HIT');
    expect(upstream.proxy.records.map((r) => `${r.method} ${r.path}`)).toEqual(['HEAD /v2/multi/manifests/latest']);
  });

  it('follows a tag that moved upstream once its TTL has passed', async () => {
    const v1 = upstream.fixtures.image('small:v1');
    const v2 = upstream.fixtures.image('small:v2');
    await pushFixtures(upstream.registry.url, upstream.fixtures, [{ ...v1, tags: ['moving'] }]);
    const before = await get(`${m.url}/v2/small/manifests/moving`, { accept: MANIFEST_ACCEPT });
    expect(before.res.headers.get('docker-content-digest')).toBe(v1.manifest.digest);
    await pushFixtures(upstream.registry.url, upstream.fixtures, [{ ...v2, tags: ['moving'] }]);
    const within = await get(`${m.url}/v2/small/manifests/moving`, { accept: MANIFEST_ACCEPT });
    expect(within.res.headers.get('docker-content-digest')).toBe(v1.manifest.digest);
    clock.advance(TAG_TTL_MS);
    const after = await get(`${m.url}/v2/small/manifests/moving`, { accept: MANIFEST_ACCEPT });
    expect(after.res.headers.get('docker-content-digest')).toBe(v2.manifest.digest);
    expect(after.res.headers.get('x-cache')).toBe('MISS');
  });

  it('answers a manifest whose bytes do not match its digest with 502 and caches nothing', async () => {
    const image = upstream.fixtures.image('many');
    upstream.proxy.corrupt({ pathIncludes: `/manifests/${image.manifest.digest}` });
    const bad = await errorOf(`${m.url}/v2/many/manifests/${image.manifest.digest}`, { accept: MANIFEST_ACCEPT });
    expect(bad.status).toBe(502);
    expect(bad.error.message).toContain('does not match');
    expect(m.mirror.storage.metadata.getManifest(image.manifest.digest)).toBeUndefined();
  });

  it('serves what it cached for one repository to another while the upstream is down only when that one is known to hold it', async () => {
    const image = upstream.fixtures.image('many');
    await pushFixtures(upstream.registry.url, upstream.fixtures, [{ ...image, repo: 'copy/many', tags: ['latest'] }]);
    const layer = image.manifest.layers[1]!;
    expect((await get(`${m.url}/v2/many/blobs/${layer.digest}`)).res.status).toBe(200);
    expect((await get(`${m.url}/v2/many/manifests/${image.manifest.digest}`, { accept: MANIFEST_ACCEPT })).res.status).toBe(200);
    await waitFor('the blob to be committed', () => m.mirror.storage.metadata.getBlob(layer.digest));
    // copy/many's own manifest is cached: the cache knows that repository needs the layer.
    expect((await get(`${m.url}/v2/copy/many/manifests/latest`, { accept: MANIFEST_ACCEPT })).res.status).toBe(200);
    // While the upstream is up, a repository that never held them is refused by the upstream.
    expect((await errorOf(`${m.url}/v2/small/blobs/${layer.digest}`)).status).toBe(404);

    await upstream.proxy.down();
    const blob = await errorOf(`${m.url}/v2/small/blobs/${layer.digest}`);
    expect([blob.status, blob.error.code]).toEqual([503, 'UNAVAILABLE']);
    const head = await rawHead(m.url, `/v2/small/blobs/${layer.digest}`);
    expect(head.status).toBe(503);
    const manifest = await errorOf(`${m.url}/v2/small/manifests/${image.manifest.digest}`, { accept: MANIFEST_ACCEPT });
    expect([manifest.status, manifest.error.code]).toEqual([503, 'UNAVAILABLE']);

    const known = await get(`${m.url}/v2/copy/many/blobs/${layer.digest}`);
    expect(known.res.status).toBe(200);
    expect(known.res.headers.get('x-cache')).toBe('STALE');
    expect(sha256(known.body)).toBe(layer.digest);
    expect(m.mirror.storage.metadata.hasLink('test', 'small', layer.digest)).toBe(false);
  });
});

describeWithTools(['docker-registry'], 'fills detached from their clients', () => {
  let upstream: Upstream;

  beforeAll(async () => {
    upstream = await startUpstream();
  });
  afterAll(async () => {
    await upstream?.stop();
  });

  it('keeps filling the cache after the only client that asked for the blob goes away', async () => {
    const m = await startTestMirror(mirrorConfig(upstream.url));
    try {
      const blob = upstream.fixtures.image('large').manifest.layers[0]!;
      upstream.proxy.throttle(16 << 20, { pathIncludes: blob.digest }); // ~0.5 s for 8 MiB
      const controller = new AbortController();
      const res = await fetch(`${m.url}/v2/large/blobs/${blob.digest}`, { signal: controller.signal });
      const reader = res.body!.getReader();
      await reader.read();
      controller.abort();
      await waitFor('the blob to be committed', () => m.mirror.storage.metadata.getBlob(blob.digest));
      expect(m.mirror.storage.metadata.getBlob(blob.digest)?.size).toBe(blob.size);
      expect(upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(1);
      const again = await get(`${m.url}/v2/large/blobs/${blob.digest}`);
      expect(again.res.headers.get('x-cache')).toBe('HIT');
      expect(sha256(again.body)).toBe(blob.digest);
    } finally {
      upstream.proxy.clear();
      upstream.proxy.reset();
      await m.stop();
    }
  });

  it('gives up a fill at its own fillTimeout: the client is cut off and nothing is committed', async () => {
    const m = await startTestMirror(mirrorConfig(upstream.url, { upstream: { fillTimeout: '300ms' } }));
    try {
      const blob = upstream.fixtures.image('large').manifest.layers[0]!;
      upstream.proxy.throttle(1 << 20, { pathIncludes: blob.digest }); // 8 s for 8 MiB, far past 300 ms
      const attempt = await get(`${m.url}/v2/large/blobs/${blob.digest}`).then(
        (r) => r.res.status,
        (err: Error) => `${err} ${err.cause ?? ''}`,
      );
      expect(String(attempt)).toMatch(/terminated|socket|closed|aborted|fetch failed|reset|502|503/i);
      await fillsSettled(m.mirror);
      expect(m.mirror.storage.metadata.getBlob(blob.digest)).toBeUndefined();
      expect(await readdir(m.mirror.storage.paths.tmp)).toEqual([]);
    } finally {
      upstream.proxy.clear();
      upstream.proxy.reset();
      await m.stop();
    }
  });
});

describeWithTools(['docker-registry'], 'malformed client input', () => {
  let upstream: Upstream;
  let m: TestMirror;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url));
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
  });

  describe('is refused with an OCI error, touching neither the disk nor the upstream', () => {
    const cases: Array<[string, number, string]> = [
      ['/v2/Small/manifests/latest', 400, 'NAME_INVALID'],
      ['/v2/small/../../../etc/manifests/latest', 400, 'NAME_INVALID'],
      ['/v2/small/%2e%2e/%2e%2e/manifests/latest', 400, 'NAME_INVALID'],
      ['/v2/a//b/manifests/latest', 400, 'NAME_INVALID'],
      // Neither a tag nor a digest: the spec's manifest route names no such manifest.
      ['/v2/small/manifests/bad%2Ftag', 404, 'MANIFEST_UNKNOWN'],
      ['/v2/small/manifests/-x', 404, 'MANIFEST_UNKNOWN'],
      ['/v2/small/manifests/sha256:', 404, 'MANIFEST_UNKNOWN'],
      [`/v2/small/manifests/${'x'.repeat(129)}`, 404, 'MANIFEST_UNKNOWN'],
      // Digest-shaped, with a value the mirror cannot verify.
      [`/v2/small/manifests/sha512:${'ab'.repeat(64)}`, 400, 'DIGEST_INVALID'],
      [`/v2/small/manifests/sha256:${'A'.repeat(64)}`, 400, 'DIGEST_INVALID'],
      ['/v2/small/blobs/sha256:../../../../etc/passwd', 404, 'NOT_FOUND'],
      ['/v2/small/blobs/sha256:ABC', 400, 'DIGEST_INVALID'],
      [`/v2/small/blobs/md5:${'a'.repeat(32)}`, 400, 'DIGEST_INVALID'],
      [`/v2/small/blobs/sha256:${'a'.repeat(63)}`, 400, 'DIGEST_INVALID'],
      [`/v2/small/manifests/sha256:${'g'.repeat(64)}`, 400, 'DIGEST_INVALID'],
      [`/v2/${'a'.repeat(300)}/manifests/latest`, 400, 'NAME_INVALID'],
      ['/v2/small/nothing/here', 404, 'NOT_FOUND'],
      ['/etc/passwd', 404, 'NOT_FOUND'],
    ];
    for (const [p, status, code] of cases) {
      it(`${p.slice(0, 80)} → ${status} ${code}`, async () => {
        const before = await filesUnder(m.dataDir);
        const res = await rawGet(m.url, p);
        expect(res.status).toBe(status);
        expect(JSON.parse(res.body).errors[0].code).toBe(code);
        const head = await rawHead(m.url, p);
        expect(head.status).toBe(status);
        expect(head.headers['content-length']).toBe(String(Buffer.byteLength(res.body)));
        expect(head.body).toBe(0);
        expect(await filesUnder(m.dataDir)).toEqual(before);
        expect(upstream.proxy.count()).toBe(0);
      });
    }
  });

  it('gives HEAD errors the Content-Length of the GET error body, whoever raised the error', async () => {
    const blob = upstream.fixtures.image('small').manifest.layers[0]!;
    await get(`${m.url}/v2/small/blobs/${blob.digest}`);
    await waitFor('the blob to be committed', () => m.mirror.storage.metadata.getBlob(blob.digest));
    const cases: Array<[string, Record<string, string>, number]> = [
      ['/v2/small/manifests/nope', {}, 404], // the upstream's 404
      [`/v2/small/blobs/sha256:${'0'.repeat(64)}`, {}, 404],
      ['/v2/small/manifests/latest?ns=evil.example', {}, 404], // NAME_UNKNOWN, no upstream contact
      [`/v2/small/blobs/${blob.digest}`, { range: `bytes=${blob.size + 10}-` }, 416],
      ['/v2/_catalog', {}, 405],
      ['/nothing/here', {}, 404], // outside the registry API
      ['/admin/v1/usage', {}, 401], // the admin API without its token
    ];
    for (const [p, headers, status] of cases) {
      const res = await rawGet(m.url, p, headers);
      const head = await rawHead(m.url, p, headers);
      expect([res.status, head.status], p).toEqual([status, status]);
      expect(res.body.length, p).toBeGreaterThan(0);
      expect(head.headers['content-length'], p).toBe(String(Buffer.byteLength(res.body)));
      expect(head.headers['content-type'], p).toBe(res.headers['content-type']);
      expect(head.body, p).toBe(0);
    }
    upstream.proxy.reset();
  });

  it('survives a TLS ClientHello on the plain-HTTP port and keeps serving', async () => {
    const net = await import('node:net');
    const { port } = new URL(m.url);
    await new Promise<void>((resolve) => {
      const s = net.connect(Number(port), '127.0.0.1', () => s.write(Buffer.from('160301020001000200000303', 'hex')));
      s.on('data', () => {});
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    const { res } = await get(`${m.url}/v2/`);
    expect(res.status).toBe(200);
  });
});
