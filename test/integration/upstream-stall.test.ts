/**
 * An upstream that sends its response head and then goes silent, between the mirror and a real
 * registry (the fault proxy's stall). Manifests and tag lists must come whole within the upstream's
 * `timeout` — 503, or the cached answer STALE — for every client joined to the fetch; a blob body
 * silent for `bodyTimeout` fails its fill, which caches nothing. Every client request here gives up
 * after CLIENT_BOUND_MS, so a mirror that waits on the silence fails the test instead of hanging it.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { pushFixtures } from '../helpers/push.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { sha256 } from '../helpers/pull.ts';
import { waitFor } from '../helpers/wait.ts';
import { TestClock } from '../helpers/clock.ts';

const TAG_TTL_MS = 60_000;
/** What a client waits at most: the mirror's bounds are 1 s, so 5 s leaves room for a loaded machine. */
const CLIENT_BOUND_MS = 5_000;

interface Answer {
  status: number;
  cache: string | null;
  digest: string | null;
  body: Buffer;
}

/** A GET that gives up after CLIENT_BOUND_MS (failing with a TimeoutError, which no assertion here accepts). */
async function boundedGet(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(CLIENT_BOUND_MS) });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, cache: res.headers.get('x-cache'), digest: res.headers.get('docker-content-digest'), body };
}

function errorCode(answer: Answer): string | undefined {
  return (JSON.parse(answer.body.toString()) as { errors?: { code: string }[] }).errors?.[0]?.code;
}

describeWithTools(['docker-registry'], 'an upstream that stalls after its response head', () => {
  let upstream: Upstream;
  let m: TestMirror;
  const clock = new TestClock();

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url, { upstream: { tagTTL: `${TAG_TTL_MS}ms`, timeout: '1s', bodyTimeout: '1s' } }), { clock });
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
  });
  afterEach(() => {
    upstream.proxy.clear();
    upstream.proxy.reset();
  });

  it('answers a manifest 503 within the timeout, to the client that asked and to one that joined it, and serves it once the upstream recovers', async () => {
    const image = upstream.fixtures.image('small:v1');
    const url = `${m.url}/v2/small/manifests/v1`;
    upstream.proxy.stallAfter(10, { method: 'GET', pathIncludes: '/v2/small/manifests/v1' });
    const first = boundedGet(url, { accept: MANIFEST_ACCEPT });
    await waitFor('the upstream GET to start', () => upstream.proxy.count({ method: 'GET', pathIncludes: '/manifests/v1' }) > 0, CLIENT_BOUND_MS, 10);
    const joined = boundedGet(url, { accept: MANIFEST_ACCEPT });
    for (const answer of await Promise.all([first, joined])) {
      expect(answer.status).toBe(503);
      expect(errorCode(answer)).toBe('UNAVAILABLE');
    }
    expect(upstream.proxy.count({ method: 'GET', pathIncludes: '/manifests/v1' })).toBe(1);
    upstream.proxy.clear();
    const recovered = await boundedGet(url, { accept: MANIFEST_ACCEPT });
    expect(recovered).toMatchObject({ status: 200, cache: 'MISS', digest: image.manifest.digest });
  });

  it('serves a cached tag STALE within the timeout when it moved upstream and the new manifest stalls', async () => {
    const v1 = upstream.fixtures.image('small:v1');
    const v2 = upstream.fixtures.image('small:v2');
    await pushFixtures(upstream.registry.url, upstream.fixtures, [{ ...v1, tags: ['stalling'] }]);
    const url = `${m.url}/v2/small/manifests/stalling`;
    expect(await boundedGet(url, { accept: MANIFEST_ACCEPT })).toMatchObject({ status: 200, digest: v1.manifest.digest });
    await pushFixtures(upstream.registry.url, upstream.fixtures, [{ ...v2, tags: ['stalling'] }]);
    clock.advance(TAG_TTL_MS);
    upstream.proxy.reset();
    upstream.proxy.stallAfter(10, { method: 'GET', pathIncludes: '/manifests/stalling' });
    const stale = await boundedGet(url, { accept: MANIFEST_ACCEPT });
    expect(stale).toMatchObject({ status: 200, cache: 'STALE', digest: v1.manifest.digest });
    expect(stale.body.equals(v1.manifest.bytes)).toBe(true);
    expect(upstream.proxy.records.map((r) => `${r.method} ${r.path}`)).toEqual(['HEAD /v2/small/manifests/stalling', 'GET /v2/small/manifests/stalling']);
  });

  it('answers a tag list 503 within the timeout when nothing is cached, and the last list STALE once one is', async () => {
    upstream.proxy.stallAfter(5, { method: 'GET', pathIncludes: '/v2/many/tags/list' });
    const none = await boundedGet(`${m.url}/v2/many/tags/list`);
    expect(none.status).toBe(503);
    expect(errorCode(none)).toBe('UNAVAILABLE');
    upstream.proxy.clear();
    const fresh = await boundedGet(`${m.url}/v2/many/tags/list`);
    expect(fresh).toMatchObject({ status: 200, cache: 'MISS' });
    upstream.proxy.stallAfter(5, { method: 'GET', pathIncludes: '/v2/many/tags/list' });
    const stale = await boundedGet(`${m.url}/v2/many/tags/list`);
    expect(stale).toMatchObject({ status: 200, cache: 'STALE' });
    expect(JSON.parse(stale.body.toString())).toEqual(JSON.parse(fresh.body.toString()));
  });

  it('fails a blob fill whose body goes silent for bodyTimeout, commits nothing, and fills it afresh once the upstream recovers', async () => {
    const blob = upstream.fixtures.image('medium').manifest.layers[0]!;
    const url = `${m.url}/v2/medium/blobs/${blob.digest}`;
    upstream.proxy.stallAfter(64 * 1024, { method: 'GET', pathIncludes: blob.digest });
    const attempt = await boundedGet(url).then(
      (answer) => `status ${answer.status}, ${answer.body.length} bytes`,
      (err: Error) => `${err.name}: ${err.message} ${String(err.cause ?? '')}`,
    );
    // The head (200) went out before the body stalled: the client sees its connection cut, not a timeout of its own.
    expect(attempt).not.toMatch(/TimeoutError/);
    expect(attempt).toMatch(/terminated|socket|closed|reset|other side/i);
    await waitFor('the fill to end', () => m.mirror.storage.blobs.activeFills === 0, CLIENT_BOUND_MS, 10);
    expect(m.mirror.storage.metadata.getBlob(blob.digest)).toBeUndefined();
    upstream.proxy.clear();
    const again = await boundedGet(url);
    expect(again.status).toBe(200);
    expect(sha256(again.body)).toBe(blob.digest);
    expect(upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(2);
  });
});
