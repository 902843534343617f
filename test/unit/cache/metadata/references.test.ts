/**
 * @module test/unit/cache/references
 * What a manifest references, parsed from its bytes (OCI image manifest and index, Docker
 * schema 2 manifest and list, Docker schema 1, OCI 1.1 `subject`), recorded by
 * Metadata.putManifest in the manifest's own transaction, backfilled when a version 1 database
 * is opened, and followed up (dependents) and down (closure) by RefGraph.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { Metadata } from '../../../../src/cache/metadata/metadata.ts';
import { manifestReferences } from '../../../../src/cache/metadata/manifest-references.ts';
import { SCHEMA_VERSION } from '../../../../src/cache/metadata/schema.ts';
import { UsageMeter } from '../../../../src/cache/metadata/usage.ts';
import { withRawDatabase } from './raw-database.ts';
import { OCI_INDEX, OCI_MANIFEST, openCacheFixture, sha256, type CacheFixture } from '../cache-fixture.ts';

const d = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
const json = (doc: unknown) => Buffer.from(JSON.stringify(doc));
const refsOf = (m: Metadata, parent: string) =>
  m.refs
    .children(parent)
    .map((r) => ({ child: r.digest, kind: r.kind }))
    .sort((a, b) => a.child.localeCompare(b.child));
const countRefs = (file: string) => withRawDatabase(file, (db) => db.prepare('SELECT count(*) FROM refs').pluck().get());

let fx: CacheFixture | undefined;
let dir: string | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('manifestReferences', () => {
  it('finds the config and layers of an image manifest', () => {
    const bytes = json({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { digest: d(1), size: 1 }, layers: [{ digest: d(2) }, { digest: d(3) }] });
    expect(manifestReferences(bytes)).toEqual([
      { digest: d(1), kind: 'blob' },
      { digest: d(2), kind: 'blob' },
      { digest: d(3), kind: 'blob' },
    ]);
  });

  it('finds the platform manifests of an OCI index and a Docker manifest list', () => {
    for (const mediaType of [OCI_INDEX, 'application/vnd.docker.distribution.manifest.list.v2+json']) {
      const bytes = json({ schemaVersion: 2, mediaType, manifests: [{ digest: d(1), platform: { os: 'linux' } }, { digest: d(2) }] });
      expect(manifestReferences(bytes)).toEqual([
        { digest: d(1), kind: 'manifest' },
        { digest: d(2), kind: 'manifest' },
      ]);
    }
  });

  it("records a referrer's subject as a subject, not as something it needs", () => {
    const bytes = json({ schemaVersion: 2, config: { digest: d(1) }, layers: [{ digest: d(2) }], subject: { digest: d(9) } });
    expect(manifestReferences(bytes)).toContainEqual({ digest: d(9), kind: 'subject' });
  });

  it('finds the layers of a Docker schema 1 manifest', () => {
    expect(manifestReferences(json({ schemaVersion: 1, fsLayers: [{ blobSum: d(1) }, { blobSum: d(1) }, { blobSum: d(2) }] }))).toEqual([
      { digest: d(1), kind: 'blob' },
      { digest: d(2), kind: 'blob' },
    ]);
  });

  it('records nothing for what it cannot read, and never throws', () => {
    for (const text of ['not json', '[]', 'null', '42', '{"layers": "x"}', '{"config": {"digest": 7}}']) {
      expect(manifestReferences(Buffer.from(text))).toEqual([]);
    }
    // Digests ocimirror cannot store are not references it could follow.
    expect(manifestReferences(json({ layers: [{ digest: `sha512:${'a'.repeat(128)}` }, { digest: '../../etc/passwd' }] }))).toEqual([]);
  });
});

describe('Metadata.putManifest records references', () => {
  it('writes refs with the manifest', async () => {
    fx = await openCacheFixture();
    const config = await fx.blob('c');
    const layer = await fx.blob('l');
    const image = fx.image({ config, layers: [layer], tag: 'v1' });
    const index = fx.index([image], { tag: 'latest' });
    expect(refsOf(fx.metadata, image)).toEqual([
      { child: config, kind: 'blob' },
      { child: layer, kind: 'blob' },
    ].sort((a, b) => a.child.localeCompare(b.child)));
    expect(refsOf(fx.metadata, index)).toEqual([{ child: image, kind: 'manifest' }]);
  });

  it('writes no refs when the manifest transaction fails', async () => {
    fx = await openCacheFixture();
    const bytes = json({ schemaVersion: 2, config: { digest: d(1) }, layers: [] });
    const brokenTag = { upstream: 'hub', repo: null as unknown as string }; // tags.repo is NOT NULL
    expect(() => fx!.metadata.putManifest({ digest: sha256(bytes), mediaType: OCI_MANIFEST, bytes }, brokenTag, 'latest')).toThrow();
    expect(fx.metadata.getManifest(sha256(bytes))).toBeUndefined();
    expect(refsOf(fx.metadata, sha256(bytes))).toEqual([]);
  });

  it('keeps the refs of the bytes first stored for a digest', async () => {
    fx = await openCacheFixture();
    fx.metadata.putManifest({ digest: d(100), mediaType: OCI_MANIFEST, bytes: json({ layers: [{ digest: d(1) }] }) }, { upstream: 'hub', repo: 'r' });
    fx.metadata.putManifest({ digest: d(100), mediaType: OCI_MANIFEST, bytes: json({ layers: [{ digest: d(2) }] }) }, { upstream: 'hub', repo: 'r' });
    expect(refsOf(fx.metadata, d(100))).toEqual([{ child: d(1), kind: 'blob' }]);
  });
});

describe('RefGraph', () => {
  it('walks up from a blob to every manifest and index that needs it, but not to referrers', async () => {
    fx = await openCacheFixture();
    const [c, base, app] = [await fx.blob('c'), await fx.blob('base'), await fx.blob('app')];
    const amd = fx.image({ config: c, layers: [base, app] });
    const arm = fx.image({ config: c, layers: [app] });
    const other = fx.image({ config: c, layers: [base] });
    const index = fx.index([amd, arm]);
    const sig = fx.image({ config: c, layers: [], subject: amd });
    const graph = fx.metadata.refs;
    expect(graph.dependents(base)).toEqual(new Set([amd, other, index]));
    expect(graph.dependents(amd)).toEqual(new Set([index]));
    expect(graph.dependents(app).has(sig)).toBe(false);
  });

  it('walks down from roots to everything they need, and to referrers when asked', async () => {
    fx = await openCacheFixture();
    const [c, l1, l2, s] = [await fx.blob('c'), await fx.blob('l1'), await fx.blob('l2'), await fx.blob('s')];
    const a = fx.image({ config: c, layers: [l1] });
    const b = fx.image({ config: c, layers: [l2] });
    const index = fx.index([a, b]);
    const sig = fx.image({ config: s, layers: [], subject: index });
    const graph = fx.metadata.refs;
    expect(graph.closure([index])).toEqual(new Set([index, a, b, c, l1, l2]));
    expect(graph.closure([index], { referrers: true })).toEqual(new Set([index, a, b, c, l1, l2, sig, s]));
    expect(graph.closure([d(404)])).toEqual(new Set([d(404)]));
  });
});

describe('Metadata: migration from schema version 1', () => {
  /** The version 1 schema exactly as ocimirror 0.1 wrote it. */
  const V1 = `
    CREATE TABLE blobs (digest TEXT PRIMARY KEY, size INTEGER NOT NULL, media_type TEXT, created_at INTEGER NOT NULL,
      last_access INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
    CREATE INDEX blobs_last_access ON blobs(last_access);
    CREATE TABLE manifests (digest TEXT PRIMARY KEY, media_type TEXT NOT NULL, size INTEGER NOT NULL, bytes BLOB NOT NULL,
      created_at INTEGER NOT NULL, last_access INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
    CREATE TABLE tags (upstream TEXT NOT NULL, repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,
      fetched_at INTEGER NOT NULL, PRIMARY KEY (upstream, repo, tag)) WITHOUT ROWID;
    CREATE INDEX tags_digest ON tags(digest);
    CREATE TABLE links (upstream TEXT NOT NULL, repo TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (upstream, repo, digest)) WITHOUT ROWID;
    CREATE INDEX links_digest ON links(digest);
    CREATE TABLE lists (upstream TEXT NOT NULL, key TEXT NOT NULL, status INTEGER NOT NULL, content_type TEXT, link TEXT,
      body BLOB NOT NULL, fetched_at INTEGER NOT NULL, PRIMARY KEY (upstream, key)) WITHOUT ROWID;
    PRAGMA user_version = 1;`;

  it('adds refs for every manifest already stored, seeds usage, and keeps the data', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-migrate-'));
    const file = path.join(dir, 'ocimirror.db');
    const db = new Database(file);
    db.exec(V1);
    const insertManifest = db.prepare('INSERT INTO manifests VALUES (?, ?, ?, ?, 1, 1, 0)');
    // More manifests than one backfill page, so paging is exercised.
    db.transaction(() => {
      for (let i = 0; i < 1200; i++) {
        const bytes = json({ schemaVersion: 2, config: { digest: d(1) }, layers: [{ digest: d(1000 + i) }] });
        insertManifest.run(d(10_000 + i), OCI_MANIFEST, bytes.length, bytes);
      }
    })();
    const indexBytes = json({ schemaVersion: 2, manifests: [{ digest: d(10_000) }, { digest: d(10_001) }] });
    insertManifest.run(d(99_999), OCI_INDEX, indexBytes.length, indexBytes);
    insertManifest.run(d(99_998), 'application/octet-stream', 3, Buffer.from('???'));
    db.prepare('INSERT INTO blobs VALUES (?, ?, NULL, 1, 1, 0)').run(d(1), 500);
    db.prepare('INSERT INTO blobs VALUES (?, ?, NULL, 1, 1, 0)').run(d(1000), 250);
    db.prepare('INSERT INTO tags VALUES (?, ?, ?, ?, ?, 1)').run('hub', 'library/app', 'latest', d(99_999), OCI_INDEX);
    db.close();

    const m = new Metadata(file, { flushIntervalMs: 3_600_000 });
    try {
      expect(withRawDatabase(file, (raw) => raw.pragma('user_version', { simple: true }))).toBe(SCHEMA_VERSION);
      expect(refsOf(m, d(10_005))).toEqual([
        { child: d(1), kind: 'blob' },
        { child: d(1005), kind: 'blob' },
      ]);
      expect(refsOf(m, d(99_999))).toEqual([
        { child: d(10_000), kind: 'manifest' },
        { child: d(10_001), kind: 'manifest' },
      ]);
      expect(refsOf(m, d(99_998))).toEqual([]);
      expect(countRefs(file)).toBe(1200 * 2 + 2);
      expect(new UsageMeter(m).current()).toMatchObject({ bytes: 750, blobs: 2, manifests: 1202 });
      expect(m.getTag('hub', 'library/app', 'latest')?.digest).toBe(d(99_999));
      expect(m.refs.dependents(d(1000))).toEqual(new Set([d(10_000), d(99_999)]));
    } finally {
      m.close();
    }
    // Opening again at the current version changes nothing.
    const again = new Metadata(file, { flushIntervalMs: 3_600_000 });
    expect(countRefs(file)).toBe(1200 * 2 + 2);
    again.close();
  });

  it('refuses a database from a newer version without touching it', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-migrate-'));
    const file = path.join(dir, 'ocimirror.db');
    const db = new Database(file);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => new Metadata(file)).toThrow(/schema version \d+ is not supported/);
    const after = new Database(file);
    expect(after.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table'").pluck().get()).toBe(0);
    after.close();
  });
});
