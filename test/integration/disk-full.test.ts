/**
 * A full disk mid-fill (a real one: the data dir is a small tmpfs) must not fail the clients:
 * they get the whole, verified blob relayed from the upstream, nothing partial is committed,
 * the temp file is gone and the next request tries again.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeIf, hasTool } from '../helpers/tools.ts';
import { sha256 } from '../helpers/pull.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { waitFor } from '../helpers/wait.ts';


/** A 3 MiB tmpfs: SQLite fits, the 8 MiB `large` layer does not. */
function mountSmallDisk(): string | undefined {
  const dir = mkdtempSync(path.join(tmpdir(), 'ocimirror-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', dir], { stdio: 'pipe' });
    return dir;
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
}

const disk = process.getuid?.() === 0 ? mountSmallDisk() : undefined;
if (disk) execFileSync('umount', [disk]); // mounted again in beforeAll; this only probes that we can

describeIf(disk !== undefined && hasTool('docker-registry'), 'needs docker-registry and a root user who can mount a tmpfs', 'a disk that fills up during a fill', () => {
  let upstream: Upstream;
  let m: TestMirror;
  let mountPoint: string;

  beforeAll(async () => {
    mountPoint = disk as string;
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mountPoint]);
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url), { dataDir: path.join(mountPoint, 'data') });
  });
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
    if (mountPoint) {
      execFileSync('umount', [mountPoint]);
      rmSync(mountPoint, { recursive: true, force: true });
    }
  });

  it('relays the verified blob to every client, commits nothing and evicts to make room', async () => {
    // Something least-recently-used to evict: the medium image's layers.
    for (const layer of upstream.fixtures.image('medium').manifest.layers) {
      expect((await fetch(`${m.url}/v2/medium/blobs/${layer.digest}`)).status).toBe(200);
    }
    await waitFor('the medium layers to be committed', () => upstream.fixtures.image('medium').manifest.layers.every((l) => m.mirror.storage.metadata.getBlob(l.digest)));
    const blob = upstream.fixtures.image('large').manifest.layers[0]!;
    const url = `${m.url}/v2/large/blobs/${blob.digest}`;
    const results = await Promise.all(
      Array.from({ length: 3 }, async () => {
        const res = await fetch(url);
        return { status: res.status, cache: res.headers.get('x-cache'), body: Buffer.from(await res.arrayBuffer()) };
      }),
    );
    for (const r of results) {
      expect(r.status).toBe(200);
      expect(r.body.length).toBe(blob.size);
      expect(sha256(r.body)).toBe(blob.digest);
    }
    // Once the relay ends and the temp file's space is really free, an eviction job runs.
    const evicted = () => m.mirror.background.store.list({ type: 'evict' }).find((j) => (j.payload as { diskFull?: boolean } | null)?.diskFull && j.state === 'done');
    await waitFor('a disk-full eviction job to finish', evicted);
    expect((evicted()!.result as { evicted: number }).evicted).toBeGreaterThan(0);
    expect(m.mirror.storage.metadata.getBlob(blob.digest)).toBeUndefined();
    expect(readdirSync(m.mirror.storage.paths.tmp)).toEqual([]);

    const again = await fetch(url);
    expect(again.status).toBe(200);
    expect(sha256(Buffer.from(await again.arrayBuffer()))).toBe(blob.digest);
    // Small blobs still fit and are cached as usual.
    const small = upstream.fixtures.image('small').manifest.layers[0]!;
    expect((await fetch(`${m.url}/v2/small/blobs/${small.digest}`)).status).toBe(200);
    // The client has its bytes before the commit lands: wait for the row, never a fixed delay.
    const row = await waitFor('the small blob committed', () => m.mirror.storage.metadata.getBlob(small.digest), 10_000);
    expect(row.size).toBe(small.size);
  });
});
