/**
 * One structured JSON line per request: method, path, status, bytes, duration, cache result and
 * upstream — and never a header value such as the client's Authorization, nor a query value other
 * than the ones that route or page a request.
 */
import { PassThrough } from 'node:stream';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { mirrorConfig } from '../helpers/mirror.ts';
import { parseConfig } from '../../src/config/load.ts';
import { startMirror, type Mirror } from '../../src/mirror.ts';
import { createLogger } from '../../src/util/logger.ts';
import { waitFor } from '../helpers/wait.ts';

describeWithTools(['docker-registry'], 'the access log', () => {
  let upstream: Upstream;
  let mirror: Mirror;
  let dataDir: string;
  let text = '';

  beforeAll(async () => {
    upstream = await startUpstream();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ocimirror-log-'));
    const sink = new PassThrough();
    sink.on('data', (d: Buffer) => (text += d.toString()));
    mirror = await startMirror(parseConfig({ ...mirrorConfig(upstream.url), storage: { path: dataDir } }), createLogger('info', sink));
  });
  afterAll(async () => {
    await mirror?.stop({ graceMs: 2000, drainDelayMs: 0 });
    await upstream?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('writes one JSON line per request with method, path, status, bytes, duration, cache result and upstream', async () => {
    const blob = upstream.fixtures.image('small').manifest.layers[0]!;
    const url = `${mirror.url}/v2/small/blobs/${blob.digest}`;
    for (let i = 0; i < 2; i++) {
      const res = await fetch(url, { headers: { authorization: 'Bearer client-secret-value' } });
      await res.arrayBuffer();
      // The commit (fsync, rename, row) follows the last byte; the second request must find it.
      await waitFor('the blob to be committed', () => mirror.storage.metadata.getBlob(blob.digest));
    }
    await fetch(`${mirror.url}/v2/Bad/manifests/latest`).then((r) => r.arrayBuffer());
    // A line is written when its response closes, which may come after the client has the body.
    const parsed = () => text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const lines = await waitFor('three access lines', () => {
      const all = parsed();
      return all.filter((l) => l.module === 'access').length >= 3 && all;
    });
    const access = lines.filter((l) => l.module === 'access');
    const blobLines = access.filter((l) => l.path === `/v2/small/blobs/${blob.digest}`);
    expect(blobLines).toHaveLength(2);
    expect(blobLines[0]).toMatchObject({ method: 'GET', status: 200, cache: 'MISS', upstream: 'test', completed: true });
    expect(blobLines[1]).toMatchObject({ cache: 'HIT' });
    for (const l of blobLines) {
      expect(l.bytes as number).toBeGreaterThan(blob.size);
      expect(typeof l.ms).toBe('number');
    }
    expect(access.find((l) => l.path === '/v2/Bad/manifests/latest')).toMatchObject({ status: 400 });
    expect(text).not.toContain('client-secret-value');
  });

  it('logs the routing query values (ns, n, last, digest) and replaces every other one', async () => {
    const layer = upstream.fixtures.image('small').manifest.layers[0]!;
    const targets = {
      '/v2/small/tags/list?n=2&last=a&token=query-secret-one': '/v2/small/tags/list?n=2&last=a&token=REDACTED',
      '/v2/small/manifests/v1?ns=registry.test&access_token=query-secret-two': '/v2/small/manifests/v1?ns=registry.test&access_token=REDACTED',
      [`/v2/small/blobs/${layer.digest}?digest=${layer.digest}&query-secret-three`]: `/v2/small/blobs/${layer.digest}?digest=${layer.digest}&REDACTED`,
    };
    for (const target of Object.keys(targets)) await fetch(`${mirror.url}${target}`).then((r) => r.arrayBuffer());
    // Waits for the lines by path alone, so a wrongly rendered query fails the assertion below, not the wait.
    const bare = Object.keys(targets).map((t) => t.split('?')[0]);
    const logged = await waitFor('the three access lines', () => {
      const paths = text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.module === 'access' && typeof l.path === 'string' && (l.path as string).includes('?'))
        .map((l) => l.path as string);
      return bare.every((b) => paths.some((p) => p.split('?')[0] === b)) && paths;
    });
    expect(logged).toEqual(expect.arrayContaining(Object.values(targets)));
    expect(text).not.toContain('query-secret');
  });
});
