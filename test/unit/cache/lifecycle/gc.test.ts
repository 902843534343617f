/**
 * @module test/unit/cache/gc
 * Runtime garbage collection against a real data directory: files without rows (never a fill's
 * file before its row lands), rows without files, blobs no manifest references once past the
 * grace (never pinned or in use), old temp files no fill owns, tags and links pointing at
 * nothing, and, on demand, files whose size disagrees with their row.
 */
import { mkdir, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GarbageCollector } from '../../../../src/cache/lifecycle/gc.ts';
import { parseDigest } from '../../../../src/registry/digest.ts';
import { UsageMeter } from '../../../../src/cache/metadata/usage.ts';
import { openCacheFixture, sha256, type CacheFixture } from '../cache-fixture.ts';
import { withRawDatabase } from '../metadata/raw-database.ts';

const HOUR = 3_600_000;
const NOTHING = {
  filesWithoutRow: 0, rowsWithoutFile: 0, unreferencedBlobs: 0, tempFilesRemoved: 0, sizeMismatches: 0,
  orphanTags: 0, orphanLinks: 0, orphanRefs: 0, skippedPinned: 0, skippedInUse: 0, bytesFreed: 0,
};

let fx: CacheFixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

function collector(f: CacheFixture, pinned?: () => ReadonlySet<string>): GarbageCollector {
  return new GarbageCollector({ metadata: f.metadata, blobs: f.blobs, hot: f.hot, log: f.log, pinned });
}

/** A blob file put where a committed blob would be, with no row. */
async function fileOnly(f: CacheFixture, content: string): Promise<string> {
  const digest = sha256(content);
  const hex = digest.slice('sha256:'.length);
  await mkdir(f.paths.blobDir(hex), { recursive: true });
  await writeFile(f.paths.blobFile(hex), content);
  return digest;
}

/** A fill of `digest` held open until `release` is called (its upstream never answers). */
function fillInFlight(f: CacheFixture, digest: string): () => void {
  let release!: () => void;
  const fill = f.blobs.fill({
    digest: parseDigest(digest),
    link: { upstream: 'hub', repo: 'r' },
    source: 'hub',
    timeoutMs: 60_000,
    open: () => new Promise((_, reject) => (release = () => reject(new Error('released')))),
  });
  fill.catch(() => {});
  return () => release();
}

describe('GarbageCollector: blob files and rows', () => {
  it('finds nothing to do in a consistent cache', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    fx.image({ config: c, layers: [l], tag: 'v1' });
    fx.advance(10 * HOUR);
    expect(await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() })).toEqual(NOTHING);
  });

  it('removes files without a row and strays no blob could be named', async () => {
    fx = await openCacheFixture();
    const orphan = await fileOnly(fx, 'orphan bytes');
    const strayDir = path.join(fx.paths.blobsRoot, 'zz');
    await mkdir(strayDir, { recursive: true });
    await writeFile(path.join(strayDir, 'not-a-blob'), '12345');
    const report = await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() });
    expect(report).toMatchObject({ filesWithoutRow: 2, bytesFreed: 'orphan bytes'.length + 5 });
    expect(fx.fileExists(orphan)).toBe(false);
    expect(existsSync(path.join(strayDir, 'not-a-blob'))).toBe(false);
  });

  it('leaves the file of a fill in flight, which renames its file before writing its row', async () => {
    fx = await openCacheFixture();
    const committing = await fileOnly(fx, 'being committed');
    const release = fillInFlight(fx, committing);
    try {
      expect((await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() })).filesWithoutRow).toBe(0);
      expect(fx.fileExists(committing)).toBe(true);
    } finally {
      release();
    }
  });

  it('drops rows whose file is gone, with their links, and leaves the manifests to refetch the blob', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    const image = fx.image({ config: c, layers: [l], tag: 'v1' });
    fx.hot.setLink('hub', 'library/app', l);
    await rm(fx.paths.blobFile(l.slice('sha256:'.length)));
    const report = await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() });
    expect(report).toMatchObject({ rowsWithoutFile: 1, filesWithoutRow: 0 });
    expect(fx.metadata.getBlob(l)).toBeUndefined();
    expect(fx.metadata.hasLink('hub', 'library/app', l)).toBe(false);
    expect(fx.hot.hasLink('hub', 'library/app', l)).toBe(false);
    expect(fx.metadata.getManifest(image)).toBeDefined();
    expect(new UsageMeter(fx.metadata).recount().drifted).toBe(false);
  });

  it('with verifySizes, removes a file whose size differs from its row, and only then', async () => {
    fx = await openCacheFixture();
    const l = await fx.blob('l', 1000);
    await truncate(fx.paths.blobFile(l.slice('sha256:'.length)), 10);
    expect((await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() })).sizeMismatches).toBe(0);
    expect(fx.metadata.getBlob(l)).toBeDefined();
    const report = await collector(fx).collectGarbage({ grace: HOUR, now: fx.now(), verifySizes: true });
    expect(report).toMatchObject({ sizeMismatches: 1, bytesFreed: 10 });
    expect(fx.metadata.getBlob(l)).toBeUndefined();
    expect(fx.fileExists(l)).toBe(false);
  });
});

describe('GarbageCollector: unreferenced blobs', () => {
  it('removes blobs no manifest references once unused for the grace, and keeps the rest', async () => {
    fx = await openCacheFixture();
    const [c, l, old] = [await fx.blob('c'), await fx.blob('l'), await fx.blob('old', 300)];
    fx.image({ config: c, layers: [l], tag: 'v1' });
    fx.advance(2 * HOUR);
    const young = await fx.blob('young');
    const report = await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() });
    expect(report).toMatchObject({ unreferencedBlobs: 1, bytesFreed: 300 });
    expect(fx.metadata.getBlob(old)).toBeUndefined();
    expect(fx.fileExists(old)).toBe(false);
    for (const d of [c, l, young]) expect(fx.metadata.getBlob(d)).toBeDefined();
  });

  it('counts use, not age: a blob read within the grace stays', async () => {
    fx = await openCacheFixture();
    const b = await fx.blob('b');
    fx.advance(2 * HOUR);
    fx.metadata.recordBlobHit(b);
    expect((await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() })).unreferencedBlobs).toBe(0);
  });

  it('keeps pinned and in-use unreferenced blobs, and counts them', async () => {
    fx = await openCacheFixture();
    const [pinned, reading] = [await fx.blob('pinned'), await fx.blob('reading')];
    const stream = await fx.blobs.openCommitted(fx.metadata.getBlob(reading)!);
    fx.metadata.flush();
    fx.advance(2 * HOUR);
    const report = await collector(fx, () => new Set([pinned])).collectGarbage({ grace: HOUR, now: fx.now() });
    expect(report).toMatchObject({ unreferencedBlobs: 0, skippedPinned: 1, skippedInUse: 1 });
    await stream!.body.release();
  });

  it('treats blobs only a foreign manifest uses as unreferenced', async () => {
    fx = await openCacheFixture();
    const b = await fx.blob('artifact');
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, blobs: [{ digest: b }] }));
    fx.metadata.putManifest({ digest: sha256(bytes), mediaType: 'application/vnd.oci.artifact.manifest.v1+json', bytes }, { upstream: 'hub', repo: 'r' });
    fx.advance(2 * HOUR);
    expect((await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() })).unreferencedBlobs).toBe(1);
  });
});

describe('GarbageCollector: temp files', () => {
  it('removes temp files not written for the grace unless a fill of that digest is in flight', async () => {
    fx = await openCacheFixture();
    const [stale, fresh, filling] = ['stale', 'fresh', 'filling'].map((s) => sha256(s));
    const temp = (d: string) => fx!.store.tempPath(d.slice('sha256:'.length));
    const [staleFile, freshFile, fillingFile] = [temp(stale!), temp(fresh!), temp(filling!)];
    for (const f of [staleFile, freshFile, fillingFile]) await writeFile(f, 'partial');
    const old = new Date(Date.now() - 2 * HOUR);
    await utimes(staleFile, old, old);
    await utimes(fillingFile, old, old);
    const release = fillInFlight(fx, filling!);
    try {
      const report = await collector(fx).collectGarbage({ grace: HOUR, now: Date.now() });
      expect(report).toMatchObject({ tempFilesRemoved: 1, bytesFreed: 'partial'.length });
      expect([existsSync(staleFile), existsSync(freshFile), existsSync(fillingFile)]).toEqual([false, true, true]);
    } finally {
      release();
    }
  });
});

describe('GarbageCollector: orphan rows', () => {
  it('removes tags and links pointing at nothing cached, and refs of manifests that are gone', async () => {
    fx = await openCacheFixture();
    const [c, l] = [await fx.blob('c'), await fx.blob('l')];
    const image = fx.image({ config: c, layers: [l], tag: 'v1' });
    const gone = sha256('gone');
    // A tag and refs of a manifest that is not cached: nothing but a bug or a crash leaves these.
    withRawDatabase(fx.paths.database, (db) => {
      db.prepare("INSERT INTO tags VALUES ('hub', 'library/app', 'old', ?, 'x', 0)").run(gone);
      db.prepare("INSERT INTO refs VALUES (?, ?, 'blob')").run(gone, l);
    });
    fx.metadata.putLink('hub', 'library/app', gone);
    fx.hot.setTag('hub', 'library/app', 'old', { digest: gone, mediaType: 'x', fetchedAt: 0 });
    fx.hot.setLink('hub', 'library/app', gone);
    const report = await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() });
    expect(report).toMatchObject({ orphanTags: 1, orphanLinks: 1, orphanRefs: 1 });
    expect(fx.metadata.getTag('hub', 'library/app', 'old')).toBeUndefined();
    expect(fx.metadata.hasLink('hub', 'library/app', gone)).toBe(false);
    expect(fx.hot.getTag('hub', 'library/app', 'old')).toBeUndefined();
    expect(fx.hot.hasLink('hub', 'library/app', gone)).toBe(false);
    // What is cached keeps its tag, links and refs.
    expect(fx.metadata.getTag('hub', 'library/app', 'v1')?.digest).toBe(image);
    expect(fx.metadata.hasLink('hub', 'library/app', image)).toBe(true);
    expect(fx.metadata.hasLink('hub', 'library/app', l)).toBe(true);
  });
});

describe('GarbageCollector: hosted content', () => {
  it('keeps an unreferenced blob linked into a hosted repository past the grace', async () => {
    fx = await openCacheFixture();
    const pushed = await fx.blob('pushed', 300);
    fx.metadata.hosted.putLink('registry.internal', 'team/app', pushed, 'blob', fx.now());
    fx.advance(2 * HOUR);
    const report = await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() });
    expect(report).toMatchObject({ unreferencedBlobs: 0, skippedPinned: 0 });
    expect(fx.metadata.getBlob(pushed)).toBeDefined();
    expect(fx.fileExists(pushed)).toBe(true);
  });

  it('drops hosted links to digests stored nowhere and hosted tags to manifests not stored', async () => {
    fx = await openCacheFixture();
    const gone = sha256('gone');
    fx.metadata.hosted.putLink('registry.internal', 'team/app', gone, 'manifest', fx.now());
    fx.metadata.hosted.putTag('registry.internal', 'team/app', 'v1', { digest: gone, mediaType: 'application/vnd.oci.image.manifest.v1+json', pushedAt: fx.now() });
    const report = await collector(fx).collectGarbage({ grace: HOUR, now: fx.now() });
    expect(report).toMatchObject({ orphanLinks: 1, orphanTags: 1 });
    expect(fx.metadata.hosted.link('registry.internal', 'team/app', gone)).toBeUndefined();
    expect(fx.metadata.hosted.tag('registry.internal', 'team/app', 'v1')).toBeUndefined();
  });
});
