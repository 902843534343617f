/**
 * @module test/integration/fixtures
 * Proves the integration-test helpers against a real docker-registry: pushed fixtures resolve and download
 * intact, the three auth modes behave like registries in the wild, and the fault proxy counts requests and
 * injects the faults it promises. Every other integration suite builds on these helpers.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeFixtures, MANIFEST_ACCEPT, type FixtureImage } from '../helpers/images.ts';
import { pushFixtures } from '../helpers/push.ts';
import { startRegistry } from '../helpers/registry-server.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { sha256 } from '../helpers/pull.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { waitFor } from '../helpers/wait.ts';

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** Reads a body until it ends or breaks, and reports how far it got. */
async function readUntilError(url: string): Promise<{ received: number; error?: unknown }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  let received = 0;
  try {
    for await (const chunk of res.body!) received += chunk.length;
    return { received };
  } catch (error) {
    return { received, error };
  }
}

describeWithTools(['docker-registry', 'openssl', 'htpasswd'], 'integration test fixtures against docker-registry', () => {
  describe('plain registry behind the fault proxy', () => {
    let up: Upstream;
    beforeAll(async () => {
      up = await startUpstream();
    });
    afterAll(async () => {
      await up?.stop();
    });
    afterEach(async () => {
      up.proxy.clear();
      await up.proxy.up();
      up.proxy.reset();
    });
    const blobUrl = (image: FixtureImage, digest: string, base = up.url) => `${base}/v2/${image.repo}/blobs/${digest}`;

    it('resolves every pushed tag to the fixture digest and serves the fixture bytes', async () => {
      for (const image of up.fixtures.images) {
        for (const tag of image.tags) {
          const res = await get(`${up.registry.url}/v2/${image.repo}/manifests/${tag}`, { accept: MANIFEST_ACCEPT });
          expect(res.status, `${image.repo}:${tag}`).toBe(200);
          expect(res.headers.get('docker-content-digest')).toBe(image.manifest.digest);
          expect(res.headers.get('content-type')).toBe(image.manifest.mediaType);
          expect(res.body.equals(image.manifest.bytes)).toBe(true);
        }
      }
      expect(up.fixtures.image('small').manifest.digest).toBe(up.fixtures.image('small:v3').manifest.digest);
    });

    it('serves every blob with the size and sha256 the fixtures record', async () => {
      for (const image of up.fixtures.images) {
        for (const blob of up.fixtures.allBlobs(image)) {
          const res = await get(blobUrl(image, blob.digest, up.registry.url));
          expect(res.status).toBe(200);
          expect(res.body.length).toBe(blob.size);
          expect(sha256(res.body)).toBe(blob.digest);
        }
      }
    });

    it('returns cached fixtures with the same digests on a second call, without regenerating them', async () => {
      const index = path.join(up.fixtures.dir, 'fixtures.json');
      const before = (await stat(index)).mtimeMs;
      const again = await makeFixtures();
      expect((await stat(index)).mtimeMs).toBe(before);
      expect(again.dir).toBe(up.fixtures.dir);
      expect(again.images.map((i) => i.manifest.digest)).toEqual(up.fixtures.images.map((i) => i.manifest.digest));
    });

    it('forwards requests through the proxy and records each with its status and body bytes', async () => {
      const m = up.fixtures.image('many').manifest;
      for (let i = 0; i < 2; i++) expect((await get(`${up.url}/v2/many/manifests/latest`, { accept: MANIFEST_ACCEPT })).status).toBe(200);
      await get(`${up.url}/v2/many/manifests/nope`);
      expect(up.proxy.count({ method: 'GET', pathIncludes: '/manifests/latest' })).toBe(2);
      expect(up.proxy.bytes({ pathIncludes: '/manifests/latest' })).toBe(2 * m.size);
      expect(up.proxy.count({ pathRegex: /\/manifests\/nope$/ })).toBe(1);
      expect(up.proxy.records.at(-1)).toMatchObject({ method: 'GET', path: '/v2/many/manifests/nope', status: 404 });
    });

    it('keeps pushes on the proxy, because docker-registry builds upload Locations from the forwarded Host', async () => {
      const image = { ...up.fixtures.image('medium'), repo: 'via-proxy/medium' };
      await pushFixtures(up.url, up.fixtures, [image]);
      const blobs = up.fixtures.allBlobs(image).length;
      expect(up.proxy.count({ method: 'POST', pathIncludes: '/blobs/uploads/' })).toBe(blobs);
      expect(up.proxy.count({ method: 'PUT', pathIncludes: '/blobs/uploads/' })).toBe(blobs);
    });

    it('cutAfter closes the connection after exactly that many body bytes, for as many requests as asked', async () => {
      const image = up.fixtures.image('large');
      const layer = image.manifest.layers[0]!;
      up.proxy.cutAfter(100_000, { pathIncludes: layer.digest, times: 1 });
      const cut = await readUntilError(blobUrl(image, layer.digest));
      expect(cut.error).toBeDefined();
      expect(cut.received).toBe(100_000);
      expect(await readUntilError(blobUrl(image, layer.digest))).toEqual({ received: layer.size });
      expect(up.proxy.records.map((r) => r.fault)).toEqual(['cut', undefined]);
    });

    it('cutAfter(0) sends the headers and then closes the connection', async () => {
      const image = up.fixtures.image('small');
      up.proxy.cutAfter(0);
      const cut = await readUntilError(blobUrl(image, image.manifest.layers[0]!.digest));
      expect(cut).toMatchObject({ received: 0, error: expect.anything() });
    });

    it('corrupt keeps the body length but changes its sha256', async () => {
      const image = up.fixtures.image('medium');
      const layer = image.manifest.layers[1]!;
      up.proxy.corrupt({ pathIncludes: '/blobs/' });
      const res = await get(blobUrl(image, layer.digest));
      expect(res.status).toBe(200);
      expect(res.body.length).toBe(layer.size);
      expect(sha256(res.body)).not.toBe(layer.digest);
    });

    it('down refuses connections until up', async () => {
      await up.proxy.down();
      await expect(fetch(`${up.url}/v2/`)).rejects.toMatchObject({ cause: { code: 'ECONNREFUSED' } });
      await up.proxy.up();
      expect((await get(`${up.url}/v2/`)).status).toBe(200);
    });

    it('down with a matcher drops only the matching requests', async () => {
      await up.proxy.down({ pathIncludes: '/manifests/' });
      await expect(fetch(`${up.url}/v2/small/manifests/latest`)).rejects.toThrow();
      expect((await get(`${up.url}/v2/`)).status).toBe(200);
    });

    it('status answers with the injected code and headers, then forwards again once its times are used up', async () => {
      up.proxy.status(429, { 'retry-after': '2' }, { pathIncludes: '/manifests/', times: 1 });
      const limited = await get(`${up.url}/v2/small/manifests/v1`, { accept: MANIFEST_ACCEPT });
      expect(limited.status).toBe(429);
      expect(limited.headers.get('retry-after')).toBe('2');
      expect(JSON.parse(limited.body.toString())).toMatchObject({ errors: [{ code: 'TOOMANYREQUESTS' }] });
      expect((await get(`${up.url}/v2/small/manifests/v1`, { accept: MANIFEST_ACCEPT })).status).toBe(200);
    });

    it('delay holds the response headers back while undelayed requests go through', async () => {
      up.proxy.delay(60_000, { pathIncludes: '/manifests/', times: 1 });
      const controller = new AbortController();
      let answered = false;
      const held = fetch(`${up.url}/v2/small/manifests/latest`, { headers: { accept: MANIFEST_ACCEPT }, signal: controller.signal }).then(
        () => (answered = true),
        () => 'aborted',
      );
      await waitFor('the delayed request to reach the proxy', () => up.proxy.count({ pathIncludes: '/manifests/' }) === 1, 5_000, 5);
      // Requests sent after it, on other connections, are answered while it is still held.
      for (let i = 0; i < 3; i++) expect((await get(`${up.url}/v2/`)).status).toBe(200);
      expect(answered).toBe(false);
      controller.abort();
      expect(await held).toBe('aborted');
      // A short delay still forwards once it is over.
      up.proxy.delay(50, { pathIncludes: '/manifests/', times: 1 });
      const late = await get(`${up.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT });
      expect(late.status).toBe(200);
      expect(up.proxy.records.at(-1)).toMatchObject({ fault: 'delay', status: 200 });
    });

    it('runs docker-registry as a pull-through cache of the upstream', async () => {
      const mirror = await startRegistry({ proxy: { remoteurl: up.url } });
      try {
        const image = up.fixtures.image('library/alpine');
        const res = await get(`${mirror.url}/v2/library/alpine/manifests/3.19`, { accept: MANIFEST_ACCEPT });
        expect(res.status).toBe(200);
        expect(res.headers.get('docker-content-digest')).toBe(image.manifest.digest);
        expect(up.proxy.count({ pathIncludes: '/v2/library/alpine/manifests/' })).toBeGreaterThan(0);
      } finally {
        await mirror.stop();
      }
    });
  });

  describe('htpasswd registry', () => {
    let up: Upstream;
    beforeAll(async () => {
      up = await startUpstream({ auth: 'htpasswd' });
    });
    afterAll(async () => {
      await up?.stop();
    });

    it('refuses anonymous pulls with a Basic challenge', async () => {
      const res = await get(`${up.url}/v2/small/manifests/latest`, { accept: MANIFEST_ACCEPT });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm="/);
    });

    it('serves pulls to the configured credentials and refuses wrong ones', async () => {
      const { username, password } = up.registry.credentials!;
      const url = `${up.url}/v2/small/manifests/latest`;
      const ok = await get(url, { accept: MANIFEST_ACCEPT, authorization: basic(username, password) });
      expect(ok.status).toBe(200);
      expect(ok.headers.get('docker-content-digest')).toBe(up.fixtures.image('small').manifest.digest);
      expect((await get(url, { authorization: basic(username, 'wrong') })).status).toBe(401);
    });
  });

  describe('token registry', () => {
    let up: Upstream;
    beforeAll(async () => {
      up = await startUpstream({ auth: 'token' });
    });
    afterAll(async () => {
      await up?.stop();
    });
    const tokenFor = async (scope: string, authorization?: string) => {
      const issuer = up.registry.tokenIssuer!;
      const url = `${issuer.realm}?service=${encodeURIComponent(issuer.service)}&scope=${encodeURIComponent(scope)}`;
      return get(url, authorization ? { authorization } : {});
    };

    it('answers requests without a token with 401 and a Bearer challenge naming the realm and service', async () => {
      const { realm, service } = up.registry.tokenIssuer!;
      const res = await get(`${up.url}/v2/small/manifests/latest`);
      expect(res.status).toBe(401);
      const challenge = res.headers.get('www-authenticate') ?? '';
      expect(challenge).toMatch(/^Bearer /);
      expect(challenge).toContain(`realm="${realm}"`);
      expect(challenge).toContain(`service="${service}"`);
      expect(challenge).toContain('scope="repository:small:pull"');
    });

    it('issues tokens the registry accepts for a pull, and counts the token requests', async () => {
      const { username, password } = up.registry.credentials!;
      const before = up.registry.tokenIssuer!.requests;
      const res = await tokenFor('repository:library/alpine:pull', basic(username, password));
      expect(res.status).toBe(200);
      const body = JSON.parse(res.body.toString()) as { token: string; access_token: string; expires_in: number };
      expect(body.access_token).toBe(body.token);
      expect(body.expires_in).toBeGreaterThan(0);
      const pull = await get(`${up.url}/v2/library/alpine/manifests/latest`, { accept: MANIFEST_ACCEPT, authorization: `Bearer ${body.token}` });
      expect(pull.status).toBe(200);
      expect(pull.headers.get('docker-content-digest')).toBe(up.fixtures.image('library/alpine').manifest.digest);
      expect(up.registry.tokenIssuer!.requests).toBe(before + 1);
    });

    it('refuses wrong credentials at the token endpoint', async () => {
      const { username } = up.registry.credentials!;
      expect((await tokenFor('repository:small:pull', basic(username, 'wrong'))).status).toBe(401);
    });

    it('gives anonymous callers a token that grants nothing, which the registry answers with insufficient_scope', async () => {
      const res = await tokenFor('repository:small:pull');
      expect(res.status).toBe(200);
      const { token } = JSON.parse(res.body.toString()) as { token: string };
      const pull = await get(`${up.url}/v2/small/manifests/latest`, { authorization: `Bearer ${token}` });
      expect(pull.status).toBe(401);
      expect(pull.headers.get('www-authenticate')).toContain('error="insufficient_scope"');
    });
  });
});
