/**
 * @module test/unit/cache/blob-store
 * The content-addressed blob files (layout in src/cache/paths.ts) against a real temp
 * directory and a real SQLite database. Blobs enter only by renaming a verified temp file into
 * place (distribution's blobwriter Commit); at start-up `reconcile` removes leftover temp files,
 * drops rows whose file is gone, and removes files no row vouches for.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../../../src/cache/blobs/blob-store.ts';
import { Metadata } from '../../../../src/cache/metadata/metadata.ts';
import { dataPaths, type DataPaths } from '../../../../src/cache/paths.ts';

const hexOf = (n: number) => `${(n % 256).toString(16).padStart(2, '0')}${n.toString(16).padStart(62, '0')}`;

let root: string;
let paths: DataPaths;
let store: BlobStore;
let metadata: Metadata;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ocimirror-blobs-'));
  paths = dataPaths(root);
  store = new BlobStore(paths);
  await store.init();
  metadata = new Metadata(paths.database, { flushIntervalMs: 3_600_000 });
});

afterEach(async () => {
  metadata.close();
  await rm(root, { recursive: true, force: true });
});

/** A committed blob on disk, optionally with its row. */
async function blobFile(hex: string, { row }: { row: boolean }, content = `blob ${hex}`): Promise<void> {
  await mkdir(paths.blobDir(hex), { recursive: true });
  await writeFile(paths.blobFile(hex), content);
  if (row) metadata.putBlob({ digest: `sha256:${hex}`, size: Buffer.byteLength(content), mediaType: null });
}

describe('BlobStore.init', () => {
  it('creates the blob and temp directories', () => {
    expect(existsSync(paths.blobsRoot)).toBe(true);
    expect(existsSync(paths.tmp)).toBe(true);
  });
});

describe('BlobStore.commit', () => {
  it('moves a temp file into its content-addressed place', async () => {
    const hex = hexOf(1);
    const temp = store.tempPath(hex);
    expect(path.dirname(temp)).toBe(paths.tmp);
    await writeFile(temp, 'hello');
    await store.commit(temp, hex);
    expect(existsSync(temp)).toBe(false);
    expect(await readFile(paths.blobFile(hex), 'utf8')).toBe('hello');
    expect(await store.exists(hex)).toBe(true);
  });

  it('hands out a different temp path for every fill of the same blob', () => {
    const hex = hexOf(1);
    expect(store.tempPath(hex)).not.toBe(store.tempPath(hex));
  });

  it('removes a blob, and removing a missing one is not an error', async () => {
    const hex = hexOf(3);
    await blobFile(hex, { row: false });
    await store.remove(hex);
    expect(await store.exists(hex)).toBe(false);
    await expect(store.remove(hex)).resolves.toBeUndefined();
  });

  it('refuses to build a path from anything but 64 lower-case hex digits', () => {
    for (const bad of ['../../etc/passwd', hexOf(0xab).toUpperCase(), hexOf(1).slice(1), `${hexOf(1)}/x`, '']) {
      expect(() => store.tempPath(bad), bad).toThrow(/refusing to build a blob path/);
    }
  });
});

describe('BlobStore.reconcile', () => {
  it('reports nothing to do on an empty store', async () => {
    expect(await store.reconcile(metadata)).toEqual({ tempFilesRemoved: 0, rowsWithoutFile: 0, filesWithoutRow: 0, blobs: 0 });
  });

  it('keeps blobs that have both a file and a row', async () => {
    await blobFile(hexOf(1), { row: true });
    await blobFile(hexOf(2), { row: true });
    expect(await store.reconcile(metadata)).toEqual({ tempFilesRemoved: 0, rowsWithoutFile: 0, filesWithoutRow: 0, blobs: 2 });
    expect(await store.exists(hexOf(1))).toBe(true);
    expect(metadata.getBlob(`sha256:${hexOf(2)}`)).toBeDefined();
  });

  it('removes leftover temp files and directories', async () => {
    await writeFile(store.tempPath(hexOf(1)), 'partial');
    await writeFile(path.join(paths.tmp, 'stray'), '');
    await mkdir(path.join(paths.tmp, 'dir', 'nested'), { recursive: true });
    const report = await store.reconcile(metadata);
    expect(report.tempFilesRemoved).toBe(3);
    expect(await readdir(paths.tmp)).toEqual([]);
  });

  it('drops rows whose file is gone', async () => {
    metadata.putBlob({ digest: `sha256:${hexOf(1)}`, size: 5, mediaType: null });
    metadata.putBlob({ digest: `sha256:${hexOf(2)}`, size: 5, mediaType: null });
    await blobFile(hexOf(3), { row: true });
    const report = await store.reconcile(metadata);
    expect(report).toMatchObject({ rowsWithoutFile: 2, blobs: 1 });
    expect(metadata.getBlob(`sha256:${hexOf(1)}`)).toBeUndefined();
    expect(metadata.getBlob(`sha256:${hexOf(2)}`)).toBeUndefined();
    expect(metadata.allBlobDigests()).toEqual([`sha256:${hexOf(3)}`]);
  });

  it('removes files that no row vouches for', async () => {
    await blobFile(hexOf(1), { row: false });
    await blobFile(hexOf(2), { row: true });
    const report = await store.reconcile(metadata);
    expect(report).toMatchObject({ filesWithoutRow: 1, blobs: 1 });
    expect(await store.exists(hexOf(1))).toBe(false);
    expect(await store.exists(hexOf(2))).toBe(true);
  });

  it('repairs every kind of damage in one pass and is idempotent', async () => {
    await blobFile(hexOf(1), { row: true }); // good
    metadata.putBlob({ digest: `sha256:${hexOf(2)}`, size: 1, mediaType: null }); // row without file
    await blobFile(hexOf(3), { row: false }); // file without row
    await writeFile(store.tempPath(hexOf(4)), 'partial'); // interrupted fill
    expect(await store.reconcile(metadata)).toEqual({ tempFilesRemoved: 1, rowsWithoutFile: 1, filesWithoutRow: 1, blobs: 1 });
    expect(await store.reconcile(metadata)).toEqual({ tempFilesRemoved: 0, rowsWithoutFile: 0, filesWithoutRow: 0, blobs: 1 });
    expect(await readFile(paths.blobFile(hexOf(1)), 'utf8')).toBe(`blob ${hexOf(1)}`);
  });

  it('leaves manifests, tags and links alone', async () => {
    metadata.putManifest({ digest: `sha256:${hexOf(9)}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', bytes: Buffer.from('{}') }, { upstream: 'hub', repo: 'r' }, 'latest');
    await store.reconcile(metadata);
    expect(metadata.getManifest(`sha256:${hexOf(9)}`)).toBeDefined();
    expect(metadata.getTag('hub', 'r', 'latest')).toBeDefined();
    expect(metadata.hasLink('hub', 'r', `sha256:${hexOf(9)}`)).toBe(true);
  });

  it('does not accept a blob file found in the wrong fan-out directory', async () => {
    const hex = hexOf(1); // belongs in blobs/sha256/01/
    metadata.putBlob({ digest: `sha256:${hex}`, size: 1, mediaType: null });
    await mkdir(path.join(paths.blobsRoot, 'ff'), { recursive: true });
    await writeFile(path.join(paths.blobsRoot, 'ff', hex), 'x');
    expect(await store.reconcile(metadata)).toMatchObject({ rowsWithoutFile: 1, filesWithoutRow: 1, blobs: 0 });
    expect(metadata.getBlob(`sha256:${hex}`)).toBeUndefined();
  });

  it('checks all 256 fan-out ranges: rows under a missing directory are dropped, files in a directory no digest names are removed', async () => {
    for (let n = 0; n < 512; n++) await blobFile(hexOf(n), { row: true }); // two blobs in every prefix
    await rm(path.join(paths.blobsRoot, 'a7'), { recursive: true });
    await rm(path.join(paths.blobsRoot, 'ff'), { recursive: true });
    await mkdir(path.join(paths.blobsRoot, 'zz'));
    await writeFile(path.join(paths.blobsRoot, 'zz', `zz${'0'.repeat(62)}`), 'x');
    expect(await store.reconcile(metadata)).toEqual({ tempFilesRemoved: 0, rowsWithoutFile: 4, filesWithoutRow: 1, blobs: 508 });
    expect(metadata.getBlob(`sha256:${hexOf(0xa7)}`)).toBeUndefined();
    expect(metadata.getBlob(`sha256:${hexOf(0xff + 256)}`)).toBeUndefined();
    expect(metadata.getBlob(`sha256:${hexOf(0xfe)}`)).toBeDefined();
    expect(await readdir(path.join(paths.blobsRoot, 'zz'))).toEqual([]);
  });

  it('survives a stray file where a fan-out directory should be', async () => {
    await writeFile(path.join(paths.blobsRoot, 'README'), 'not a directory');
    await blobFile(hexOf(1), { row: true });
    expect(await store.reconcile(metadata)).toMatchObject({ blobs: 1, filesWithoutRow: 0 });
  });
});
