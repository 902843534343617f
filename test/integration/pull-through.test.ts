/**
 * Pulls through the real mirror from a real upstream (Debian's docker-registry, CNCF distribution
 * 2.8) behind a counting forwarder: every kind of manifest, blobs with and without Range, warm
 * pulls costing the upstream nothing, one upstream fetch for a herd of concurrent cold GETs.
 */
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { get, pullImage, sha256 } from '../helpers/pull.ts';
import { rawGet } from '../helpers/raw-get.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { mirrorConfig, sharedHubConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { waitFor } from '../helpers/wait.ts';



describeWithTools(['docker-registry'], 'pull-through from a real upstream registry', () => {
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
  beforeEach(() => upstream.proxy.reset());

  it('serves every manifest kind byte-for-byte with digest, type, length and ETag headers', async () => {
    for (const name of ['small', 'medium', 'multi', 'library/alpine', 'many', 'large']) {
      const image = upstream.fixtures.image(name);
      for (const method of ['HEAD', 'GET']) {
        const { res, body } = await get(`${m.url}/v2/${image.repo}/manifests/latest`, { accept: MANIFEST_ACCEPT }, method);
        expect(res.status, `${method} ${name}`).toBe(200);
        expect(res.headers.get('docker-content-digest')).toBe(image.manifest.digest);
        expect(res.headers.get('content-type')).toBe(image.manifest.mediaType);
        expect(res.headers.get('content-length')).toBe(String(image.manifest.bytes.length));
        expect(res.headers.get('etag')).toBe(`"${image.manifest.digest}"`);
        expect(res.headers.get('x-cache')).toMatch(/^(HIT|MISS)$/);
        if (method === 'GET') expect(body.equals(image.manifest.bytes)).toBe(true);
      }
    }
  });

  it('answers GET /v2/ with the distribution API version header', async () => {
    const { res } = await get(`${m.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  });

  it('makes zero upstream requests for blobs and manifests by digest on a warm pull', async () => {
    const images = ['small', 'medium', 'multi', 'library/alpine', 'many'].map((n) => upstream.fixtures.image(n));
    for (const image of images) await pullImage(m.url, upstream.fixtures, image);
    const cold = upstream.proxy.count();
    expect(cold).toBeGreaterThan(0);
    upstream.proxy.reset();
    for (const image of images) await pullImage(m.url, upstream.fixtures, image);
    expect(upstream.proxy.records).toEqual([]);
  });

  it('fetches a blob once from upstream for 16 concurrent cold GETs and gives each the right bytes', async () => {
    const blob = upstream.fixtures.image('large').manifest.layers[0]!;
    const results = await Promise.all(Array.from({ length: 16 }, () => get(`${m.url}/v2/large/blobs/${blob.digest}`)));
    for (const { res, body } of results) {
      expect(res.status).toBe(200);
      expect(body.length).toBe(blob.size);
      expect(sha256(body)).toBe(blob.digest);
    }
    expect(upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(1);
    expect(results.filter((r) => r.res.headers.get('x-cache') === 'MISS').length).toBeGreaterThan(0);
    // Clients get their last byte once the digest checks out; the commit (fsync, rename, row) follows.
    await waitFor('the blob to be committed', () => m.mirror.storage.metadata.getBlob(blob.digest));
    const again = await get(`${m.url}/v2/large/blobs/${blob.digest}`);
    expect(again.res.headers.get('x-cache')).toBe('HIT');
  });

  it('answers Range requests with 206 and Content-Range on a miss and on a hit, and 416 past the end', async () => {
    const blob = upstream.fixtures.image('medium').manifest.layers[2]!;
    const url = `${m.url}/v2/medium/blobs/${blob.digest}`;
    const whole = (await get(`${upstream.registry.url}/v2/medium/blobs/${blob.digest}`)).body;
    for (const round of ['miss', 'hit']) {
      const { res, body } = await get(url, { range: 'bytes=100-1123' });
      expect(res.status, round).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes 100-1123/${blob.size}`);
      expect(res.headers.get('content-length')).toBe('1024');
      expect(body.equals(whole.subarray(100, 1124))).toBe(true);
      const tail = await get(url, { range: 'bytes=-10' });
      expect(tail.res.status).toBe(206);
      expect(tail.body.equals(whole.subarray(whole.length - 10))).toBe(true);
      if (round === 'miss') await waitFor('the blob to be committed', () => m.mirror.storage.metadata.getBlob(blob.digest));
    }
    const past = await get(url, { range: `bytes=${blob.size + 10}-` });
    expect(past.res.status).toBe(416);
    expect(past.res.headers.get('content-range')).toBe(`bytes */${blob.size}`);
    expect(JSON.parse(past.body.toString()).errors[0].code).toBe('RANGE_INVALID');
  });

  it('answers HEAD for a blob with its length and digest, cached or not, without a body', async () => {
    const blob = upstream.fixtures.image('many').manifest.layers[5]!;
    for (const round of ['cold', 'warm']) {
      const { res, body } = await get(`${m.url}/v2/many/blobs/${blob.digest}`, {}, 'HEAD');
      expect(res.status, round).toBe(200);
      expect(res.headers.get('content-length')).toBe(String(blob.size));
      expect(res.headers.get('docker-content-digest')).toBe(blob.digest);
      expect(body.length).toBe(0);
      if (round === 'cold') await get(`${m.url}/v2/many/blobs/${blob.digest}`);
    }
  });

  it('routes by ?ns=, by /v2/<registry>/ path prefix and by Host to one upstream and one cache', async () => {
    const image = upstream.fixtures.image('library/alpine');
    await pullImage(m.url, upstream.fixtures, image, { tag: 'latest', prefix: 'docker.io/' });
    expect(upstream.proxy.count()).toBeGreaterThan(0);
    upstream.proxy.reset();
    const viaNs = await get(`${m.url}/v2/library/alpine/manifests/${image.manifest.digest}?ns=docker.io`, { accept: MANIFEST_ACCEPT });
    expect(viaNs.res.status).toBe(200);
    expect(viaNs.res.headers.get('x-cache')).toBe('HIT');
    const viaHost = await rawGet(m.url, `/v2/alpine/manifests/${image.manifest.digest}`, { host: 'docker.io', accept: MANIFEST_ACCEPT });
    expect(viaHost.status).toBe(200);
    expect(viaHost.headers['x-cache']).toBe('HIT');
    // docker.io's implicit library/ namespace: `alpine` is `library/alpine`.
    const short = await get(`${m.url}/v2/docker.io/alpine/manifests/latest`, { accept: MANIFEST_ACCEPT });
    expect(short.res.headers.get('docker-content-digest')).toBe(image.manifest.digest);
    expect(upstream.proxy.records).toEqual([]);
  });

  it('refuses a registry that is not configured, without contacting any upstream', async () => {
    for (const url of [`${m.url}/v2/library/alpine/manifests/latest?ns=evil.example`, `${m.url}/v2/evil.example/library/alpine/manifests/latest`]) {
      const { res, body } = await get(url);
      expect(res.status).toBe(404);
      const err = JSON.parse(body.toString()).errors[0];
      expect(err.code).toBe('NAME_UNKNOWN');
      expect(err.message).toContain('not configured');
    }
    expect(upstream.proxy.count()).toBe(0);
  });

  it('lists tags with n/last pagination from the upstream', async () => {
    const all = await get(`${m.url}/v2/small/tags/list`);
    expect(JSON.parse(all.body.toString())).toEqual({ name: 'small', tags: ['latest', 'v1', 'v2', 'v3'] });
    const page = await get(`${m.url}/v2/small/tags/list?n=2&last=latest`);
    expect(JSON.parse(page.body.toString()).tags).toEqual(['v1', 'v2']);
    expect(page.res.headers.get('link')).toMatch(/^<\/v2\/small\/tags\/list\?.*last=v2.*>; rel="next"$/);
  });

  it('maps upstream answers to OCI errors: 404 to *_UNKNOWN, 429 with Retry-After', async () => {
    const missing = await get(`${m.url}/v2/small/manifests/nope`, { accept: MANIFEST_ACCEPT });
    expect(missing.res.status).toBe(404);
    expect(JSON.parse(missing.body.toString()).errors[0].code).toBe('MANIFEST_UNKNOWN');
    const blob = await get(`${m.url}/v2/small/blobs/sha256:${'0'.repeat(64)}`);
    expect(blob.res.status).toBe(404);
    expect(JSON.parse(blob.body.toString()).errors[0].code).toBe('BLOB_UNKNOWN');
    upstream.proxy.status(429, { 'Retry-After': '7' }, { pathIncludes: '/manifests/limited' });
    try {
      const limited = await get(`${m.url}/v2/small/manifests/limited`, { accept: MANIFEST_ACCEPT });
      expect(limited.res.status).toBe(429);
      expect(limited.res.headers.get('retry-after')).toBe('7');
      expect(JSON.parse(limited.body.toString()).errors[0].code).toBe('TOOMANYREQUESTS');
    } finally {
      upstream.proxy.clear();
    }
  });

  it('answers push and delete methods with UNSUPPORTED', async () => {
    for (const [method, path] of [['POST', '/v2/small/blobs/uploads/'], ['PUT', '/v2/small/manifests/latest'], ['DELETE', '/v2/small/manifests/latest'], ['PATCH', '/v2/small/blobs/uploads/x']]) {
      const { res, body } = await get(`${m.url}${path}`, {}, method as string);
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(JSON.parse(body.toString()).errors[0].code).toBe('UNSUPPORTED');
    }
    expect(upstream.proxy.count()).toBe(0);
  });
});

describeWithTools(['docker-registry'], 'an upstream that serves Docker Hub and another registry', () => {
  let upstream: Upstream;
  let m: TestMirror;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(sharedHubConfig(upstream.url));
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
  });
  beforeEach(() => upstream.proxy.reset());

  it('asks the upstream for a one-component name as is when the request names the other registry', async () => {
    const image = upstream.fixtures.image('multi');
    const urls = [
      `${m.url}/v2/multi/manifests/latest?ns=registry.example`,
      `${m.url}/v2/registry.example/multi/manifests/latest`,
    ];
    for (const url of urls) {
      const { res } = await get(url, { accept: MANIFEST_ACCEPT });
      expect(res.status, url).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(image.manifest.digest);
    }
    const viaHost = await rawGet(m.url, '/v2/multi/manifests/latest', { host: 'registry.example', accept: MANIFEST_ACCEPT });
    expect(viaHost.status).toBe(200);
    expect(upstream.proxy.count({ pathIncludes: '/v2/multi/manifests/latest' })).toBe(1);
    expect(upstream.proxy.count({ pathIncludes: '/library/multi' })).toBe(0);
  });

  it('adds library/ when the request names Docker Hub, or no registry', async () => {
    const image = upstream.fixtures.image('library/alpine');
    for (const url of [`${m.url}/v2/alpine/manifests/latest?ns=docker.io`, `${m.url}/v2/docker.io/alpine/manifests/latest`, `${m.url}/v2/alpine/manifests/latest`]) {
      const { res } = await get(url, { accept: MANIFEST_ACCEPT });
      expect(res.status, url).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(image.manifest.digest);
    }
    expect(upstream.proxy.count({ pathIncludes: '/v2/library/alpine/manifests/latest' })).toBe(1);
    expect(upstream.proxy.count({ pathRegex: /^\/v2\/alpine\// })).toBe(0);
  });
});
