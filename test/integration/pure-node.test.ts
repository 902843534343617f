/**
 * The pure-Node path (`server.nativeAddon: false`): no sendfile, fills hashed and written by Node,
 * still a correct pull-through. Multi-layer images pulled cold (clients following fills) and warm
 * (cached blobs) from the real upstream, every digest checked, with the mirror's own count of
 * bytes sent by sendfile staying 0 — and, where the addon is built, rising on a mirror that may
 * use it, so the count is known to see sendfile when it happens.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { pullImage } from '../helpers/pull.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { mirrorConfig, PROJECT_ROOT, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { waitFor } from '../helpers/wait.ts';

const addonBuilt = existsSync(path.join(PROJECT_ROOT, 'native/sendfile/build/Release/sendfile.node'));

describeWithTools(['docker-registry'], 'the pure-Node path (server.nativeAddon: false)', () => {
  let upstream: Upstream;
  let m: TestMirror;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url, { server: { nativeAddon: false } }));
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
  });
  beforeEach(() => upstream.proxy.reset());

  it('pulls multi-layer images cold and warm with every digest right, never using the native addon', async () => {
    expect(m.mirror.nativeAddon).toBe(false);
    expect(m.mirror.blobWriter.sendfile.available).toBe(false);
    const images = ['medium', 'large', 'many'].map((n) => upstream.fixtures.image(n));
    for (const image of images) await pullImage(m.url, upstream.fixtures, image);
    expect(upstream.proxy.count({ method: 'GET' })).toBeGreaterThan(0);
    for (const image of images) {
      for (const layer of upstream.fixtures.allBlobs(image)) {
        await waitFor(`${layer.digest} to be committed`, () => m.mirror.storage.metadata.getBlob(layer.digest));
      }
    }

    upstream.proxy.reset();
    for (const image of images) await pullImage(m.url, upstream.fixtures, image);
    expect(upstream.proxy.records).toEqual([]);
    expect(m.mirror.blobWriter.sendfileBytes).toBe(0);
  });

  it.skipIf(!addonBuilt)('counts sendfile bytes on a mirror that may use the addon (the count above can see sendfile)', async () => {
    const native = await startTestMirror(mirrorConfig(upstream.url));
    try {
      expect(native.mirror.nativeAddon).toBe(true);
      // Cold: clients follow fills, which go out by sendfile under the default server.sendfile 'fills'.
      await pullImage(native.url, upstream.fixtures, upstream.fixtures.image('medium'));
      expect(native.mirror.blobWriter.sendfileBytes).toBeGreaterThan(0);
    } finally {
      await native.stop();
    }
  });
});
