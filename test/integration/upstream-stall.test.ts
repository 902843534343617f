/**
 * An upstream that sends its response head and then goes silent, between the mirror and a real
 * registry (the fault proxy's stall). Manifests and tag lists must come whole within the upstream's
 * `timeout` — 503, or the cached answer STALE — for every client joined to the fetch; a blob body
 * silent for `bodyTimeout` fails its fill, which caches nothing. Every client request here gives up
 * after CLIENT_BOUND_MS, so a mirror that waits on the silence fails the test instead of hanging it.
 */
import { expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { pushFixtures } from '../helpers/push.ts';
import { mirrorConfig } from '../helpers/mirror.ts';
import { useMirrorSuite } from '../helpers/mirror-suite.ts';
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
  const clock = new TestClock();
  const suite = useMirrorSuite((url) => mirrorConfig(url, { upstream: { tagTTL: `${TAG_TTL_MS}ms`, timeout: '1s', bodyTimeout: '1s' } }), { clock });

  it('answers a manifest 503 within the timeout, to the client that asked and to one that joined it, and serves it once the upstream recovers', async () => {
    const image = suite.upstream.fixtures.image('small:v1');
    const url = `${suite.m.url}/v2/small/manifests/v1`;
    suite.upstream.proxy.stallAfter(10, { method: 'GET', pathIncludes: '/v2/small/manifests/v1' });
    const first = boundedGet(url, { accept: MANIFEST_ACCEPT });
    await waitFor('the upstream GET to start', () => suite.upstream.proxy.count({ method: 'GET', pathIncludes: '/manifests/v1' }) > 0, CLIENT_BOUND_MS, 10);
    const joined = boundedGet(url, { accept: MANIFEST_ACCEPT });
    for (const answer of await Promise.all([first, joined])) {
      expect(answer.status).toBe(503);
      expect(errorCode(answer)).toBe('UNAVAILABLE');
    }
    expect(suite.upstream.proxy.count({ method: 'GET', pathIncludes: '/manifests/v1' })).toBe(1);
    suite.upstream.proxy.clear();
    const recovered = await boundedGet(url, { accept: MANIFEST_ACCEPT });
    expect(recovered).toMatchObject({ status: 200, cache: 'MISS', digest: image.manifest.digest });
  });

  it('serves a cached tag STALE within the timeout when it moved upstream and the new manifest stalls', async () => {
    const v1 = suite.upstream.fixtures.image('small:v1');
    const v2 = suite.upstream.fixtures.image('small:v2');
    await pushFixtures(suite.upstream.registry.url, suite.upstream.fixtures, [{ ...v1, tags: ['stalling'] }]);
    const url = `${suite.m.url}/v2/small/manifests/stalling`;
    expect(await boundedGet(url, { accept: MANIFEST_ACCEPT })).toMatchObject({ status: 200, digest: v1.manifest.digest });
    await pushFixtures(suite.upstream.registry.url, suite.upstream.fixtures, [{ ...v2, tags: ['stalling'] }]);
    clock.advance(TAG_TTL_MS);
    suite.upstream.proxy.reset();
    suite.upstream.proxy.stallAfter(10, { method: 'GET', pathIncludes: '/manifests/stalling' });
    const stale = await boundedGet(url, { accept: MANIFEST_ACCEPT });
    expect(stale).toMatchObject({ status: 200, cache: 'STALE', digest: v1.manifest.digest });
    expect(stale.body.equals(v1.manifest.bytes)).toBe(true);
    expect(suite.upstream.proxy.records.map((r) => `${r.method} ${r.path}`)).toEqual(['HEAD /v2/small/manifests/stalling', 'GET /v2/small/manifests/stalling']);
  });

  it('answers a tag list 503 within the timeout when nothing is cached, and the last list STALE once one is', async () => {
    suite.upstream.proxy.stallAfter(5, { method: 'GET', pathIncludes: '/v2/many/tags/list' });
    const none = await boundedGet(`${suite.m.url}/v2/many/tags/list`);
    expect(none.status).toBe(503);
    expect(errorCode(none)).toBe('UNAVAILABLE');
    suite.upstream.proxy.clear();
    const fresh = await boundedGet(`${suite.m.url}/v2/many/tags/list`);
    expect(fresh).toMatchObject({ status: 200, cache: 'MISS' });
    suite.upstream.proxy.stallAfter(5, { method: 'GET', pathIncludes: '/v2/many/tags/list' });
    const stale = await boundedGet(`${suite.m.url}/v2/many/tags/list`);
    expect(stale).toMatchObject({ status: 200, cache: 'STALE' });
    expect(JSON.parse(stale.body.toString())).toEqual(JSON.parse(fresh.body.toString()));
  });

  it('fails a blob fill whose body goes silent for bodyTimeout, commits nothing, and fills it afresh once the upstream recovers', async () => {
    const blob = suite.upstream.fixtures.image('medium').manifest.layers[0]!;
    const url = `${suite.m.url}/v2/medium/blobs/${blob.digest}`;
    suite.upstream.proxy.stallAfter(64 * 1024, { method: 'GET', pathIncludes: blob.digest });
    const attempt = await boundedGet(url).then(
      (answer) => `status ${answer.status}, ${answer.body.length} bytes`,
      (err: Error) => `${err.name}: ${err.message} ${String(err.cause ?? '')}`,
    );
    // The head (200) went out before the body stalled: the client sees its connection cut, not a timeout of its own.
    expect(attempt).not.toMatch(/TimeoutError/);
    expect(attempt).toMatch(/terminated|socket|closed|reset|other side/i);
    await waitFor('the fill to end', () => suite.m.mirror.storage.blobs.activeFills === 0, CLIENT_BOUND_MS, 10);
    expect(suite.m.mirror.storage.metadata.getBlob(blob.digest)).toBeUndefined();
    suite.upstream.proxy.clear();
    const again = await boundedGet(url);
    expect(again.status).toBe(200);
    expect(sha256(again.body)).toBe(blob.digest);
    expect(suite.upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(2);
  });
});
