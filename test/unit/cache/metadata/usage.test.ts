/**
 * @module test/unit/cache/usage
 * Cache usage is exact: the running totals kept by SQLite triggers equal a fresh SUM over the
 * tables after any sequence of blob and manifest puts, re-puts, deletes, start-up reconcile and
 * removal, and survive a reopen.
 */
import { rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Metadata } from '../../../../src/cache/metadata/metadata.ts';
import { ContentRemover } from '../../../../src/cache/lifecycle/removal.ts';
import { UsageMeter } from '../../../../src/cache/metadata/usage.ts';
import { OCI_MANIFEST, openCacheFixture, type CacheFixture } from '../cache-fixture.ts';
import { withRawDatabase } from './raw-database.ts';

const d = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

let fx: CacheFixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

/** The running totals, after checking them against a full recount. */
function exact(meter: UsageMeter) {
  const { usage, drifted } = meter.recount();
  expect(drifted).toBe(false);
  expect(meter.current()).toEqual(usage);
  return usage;
}

describe('UsageMeter', () => {
  it('starts at zero on a new cache', async () => {
    fx = await openCacheFixture();
    expect(exact(new UsageMeter(fx.metadata))).toEqual({ bytes: 0, blobs: 0, manifestBytes: 0, manifests: 0 });
  });

  it('stays exact through puts, re-puts, resizes and deletes of blobs and manifests', async () => {
    fx = await openCacheFixture();
    const m = fx.metadata;
    const meter = new UsageMeter(m);
    m.putBlob({ digest: d(1), size: 100, mediaType: null });
    m.putBlob({ digest: d(2), size: 50, mediaType: null });
    expect(exact(meter)).toMatchObject({ bytes: 150, blobs: 2 });
    m.putBlob({ digest: d(1), size: 100, mediaType: null }); // committed again: same row
    expect(exact(meter)).toMatchObject({ bytes: 150, blobs: 2 });
    m.putBlob({ digest: d(2), size: 70, mediaType: null }); // a row stored again with another size
    expect(exact(meter)).toMatchObject({ bytes: 170, blobs: 2 });
    m.deleteBlob(d(1));
    m.deleteBlob(d(1));
    m.deleteBlob(d(404));
    expect(exact(meter)).toMatchObject({ bytes: 70, blobs: 1 });
    m.putManifest({ digest: d(10), mediaType: OCI_MANIFEST, bytes: Buffer.alloc(30) }, { upstream: 'hub', repo: 'r' }, 'a');
    m.putManifest({ digest: d(10), mediaType: OCI_MANIFEST, bytes: Buffer.alloc(99) }, { upstream: 'hub', repo: 'r' }, 'b');
    m.putManifest({ digest: d(11), mediaType: OCI_MANIFEST, bytes: Buffer.alloc(5) }, { upstream: 'hub', repo: 'r' });
    expect(exact(meter)).toEqual({ bytes: 70, blobs: 1, manifestBytes: 35, manifests: 2 });
  });

  it('counts what start-up reconcile drops and what removal takes out', async () => {
    fx = await openCacheFixture();
    const meter = new UsageMeter(fx.metadata);
    const a = await fx.blob('a', 1000);
    const b = await fx.blob('b', 2000);
    const c = await fx.blob('c', 4000);
    const image = fx.image({ config: a, layers: [b] });
    expect(exact(meter)).toMatchObject({ bytes: 7000, blobs: 3, manifests: 1 });
    await rm(fx.paths.blobFile(c.slice('sha256:'.length)));
    await fx.store.reconcile(fx.metadata);
    expect(exact(meter)).toMatchObject({ bytes: 3000, blobs: 2 });
    const remover = new ContentRemover({ metadata: fx.metadata, blobs: fx.blobs, hot: fx.hot });
    fx.metadata.transaction(() => remover.removeRows({ manifests: [image], blobs: [b] }));
    expect(exact(meter)).toEqual({ bytes: 1000, blobs: 1, manifestBytes: 0, manifests: 0 });
  });

  it('keeps the totals across a reopen and repairs a row that drifted', async () => {
    fx = await openCacheFixture();
    fx.metadata.putBlob({ digest: d(1), size: 123, mediaType: null });
    fx.metadata.close();
    const again = new Metadata(fx.paths.database, { flushIntervalMs: 3_600_000 });
    try {
      const meter = new UsageMeter(again);
      expect(meter.current()).toMatchObject({ bytes: 123, blobs: 1 });
      withRawDatabase(fx.paths.database, (db) => db.prepare('UPDATE usage SET blob_bytes = 1').run()); // only a bug or a hand edit could do this
      expect(meter.recount()).toMatchObject({ drifted: true, usage: { bytes: 123 } });
      expect(meter.current()).toMatchObject({ bytes: 123, blobs: 1 });
    } finally {
      again.close();
    }
  });

  it('rebuilds a missing totals row when the database is opened', async () => {
    fx = await openCacheFixture();
    fx.metadata.putBlob({ digest: d(1), size: 10, mediaType: null });
    withRawDatabase(fx.paths.database, (db) => db.prepare('DELETE FROM usage').run());
    fx.metadata.close();
    const again = new Metadata(fx.paths.database, { flushIntervalMs: 3_600_000 });
    try {
      expect(new UsageMeter(again).current()).toMatchObject({ bytes: 10, blobs: 1 });
    } finally {
      again.close();
    }
  });
});
