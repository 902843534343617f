/**
 * @module test/unit/cache/metadata
 * The SQLite metadata against a real better-sqlite3 database in a temp directory: committed
 * blobs, manifests with their exact bytes (a manifest's digest is over its bytes, so they must
 * come back byte-for-byte), tags, repository links and cached lists. A manifest, its link and
 * its tag are written in one transaction; access-time bumps are batched and flushed together.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Metadata, type MetadataOptions } from '../../../../src/cache/metadata/metadata.ts';
import { withRawDatabase } from './raw-database.ts';

const digestOf = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const HUB = { upstream: 'hub', repo: 'library/alpine' };

function clock(start = 1_700_000_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

let dir: string;
let file: string;
const opened: Metadata[] = [];

function open(opts: MetadataOptions = {}): Metadata {
  const m = new Metadata(file, { flushIntervalMs: 3_600_000, ...opts });
  opened.push(m);
  return m;
}

/** How a blob or manifest has been used, as stored. */
function row(m: Metadata, table: 'blobs' | 'manifests', digest: string) {
  return m[table].access(digest);
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-metadata-'));
  file = path.join(dir, 'ocimirror.db');
});

afterEach(async () => {
  for (const m of opened.splice(0)) m.close();
  await rm(dir, { recursive: true, force: true });
});

describe('Metadata: blobs', () => {
  it('stores a blob and reads it back', () => {
    const m = open();
    m.putBlob({ digest: digestOf(1), size: 1234, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
    m.putBlob({ digest: digestOf(2), size: 0, mediaType: null });
    expect(m.getBlob(digestOf(1))).toEqual({ digest: digestOf(1), size: 1234, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
    expect(m.getBlob(digestOf(2))).toEqual({ digest: digestOf(2), size: 0, mediaType: null });
    expect(m.getBlob(digestOf(3))).toBeUndefined();
    expect(m.allBlobDigests().sort()).toEqual([digestOf(1), digestOf(2)]);
  });

  it('records the repository a blob was fetched for with it', () => {
    const m = open();
    m.putBlob({ digest: digestOf(1), size: 1, mediaType: null }, HUB);
    expect(m.hasLink('hub', 'library/alpine', digestOf(1))).toBe(true);
    expect(m.hasLink('hub', 'library/busybox', digestOf(1))).toBe(false);
    expect(m.hasLink('ghcr', 'library/alpine', digestOf(1))).toBe(false);
  });

  it('updates the size of a blob stored again but keeps its history', () => {
    const c = clock();
    const m = open({ now: c.now });
    m.putBlob({ digest: digestOf(1), size: 10, mediaType: null });
    const created = row(m, 'blobs', digestOf(1))?.createdAt;
    c.advance(5000);
    m.putBlob({ digest: digestOf(1), size: 20, mediaType: null });
    expect(m.getBlob(digestOf(1))?.size).toBe(20);
    expect(row(m, 'blobs', digestOf(1))?.createdAt).toBe(created);
  });

  it('deletes a blob row', () => {
    const m = open();
    m.putBlob({ digest: digestOf(1), size: 1, mediaType: null });
    m.deleteBlob(digestOf(1));
    expect(m.getBlob(digestOf(1))).toBeUndefined();
  });
});

describe('Metadata: manifests, tags and links', () => {
  it('stores a manifest, its link and its tag in one call', () => {
    const c = clock();
    const m = open({ now: c.now });
    const bytes = Buffer.from('{\n  "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.manifest.v1+json"\n}');
    m.putManifest({ digest: digestOf(1), mediaType: OCI_MANIFEST, bytes }, HUB, 'latest');
    const got = m.getManifest(digestOf(1));
    expect(got?.mediaType).toBe(OCI_MANIFEST);
    expect(Buffer.compare(got!.bytes, bytes)).toBe(0);
    expect(m.getTag('hub', 'library/alpine', 'latest')).toEqual({ digest: digestOf(1), mediaType: OCI_MANIFEST, fetchedAt: c.now() });
    expect(m.hasLink('hub', 'library/alpine', digestOf(1))).toBe(true);
    expect(m.cachedTags('hub', 'library/alpine')).toEqual(['latest']);
  });

  it('stores a manifest fetched by digest without inventing a tag', () => {
    const m = open();
    m.putManifest({ digest: digestOf(1), mediaType: OCI_MANIFEST, bytes: Buffer.from('{}') }, HUB);
    expect(m.cachedTags('hub', 'library/alpine')).toEqual([]);
    expect(m.hasLink('hub', 'library/alpine', digestOf(1))).toBe(true);
  });

  it('writes nothing when any part of the manifest transaction fails', () => {
    const m = open();
    const brokenLink = { upstream: 'hub', repo: null as unknown as string }; // links.repo is NOT NULL
    expect(() => m.putManifest({ digest: digestOf(1), mediaType: OCI_MANIFEST, bytes: Buffer.from('{}') }, brokenLink, 'latest')).toThrow();
    expect(m.getManifest(digestOf(1))).toBeUndefined();
    expect(m.tags.all()).toEqual([]);
  });

  it('keeps the first bytes stored for a digest and moves the tag to a new digest', () => {
    const c = clock();
    const m = open({ now: c.now });
    m.putManifest({ digest: digestOf(1), mediaType: OCI_MANIFEST, bytes: Buffer.from('first') }, HUB, 'latest');
    m.putManifest({ digest: digestOf(1), mediaType: OCI_MANIFEST, bytes: Buffer.from('other') }, HUB);
    expect(m.getManifest(digestOf(1))?.bytes.toString()).toBe('first');
    c.advance(60_000);
    m.putManifest({ digest: digestOf(2), mediaType: 'application/vnd.oci.image.index.v1+json', bytes: Buffer.from('second') }, HUB, 'latest');
    expect(m.getTag('hub', 'library/alpine', 'latest')).toEqual({ digest: digestOf(2), mediaType: 'application/vnd.oci.image.index.v1+json', fetchedAt: c.now() });
  });

  it('keeps tags apart per upstream and repository, and lists them in order', () => {
    const m = open();
    const put = (upstream: string, repo: string, tag: string, n: number) => m.putManifest({ digest: digestOf(n), mediaType: OCI_MANIFEST, bytes: Buffer.from(String(n)) }, { upstream, repo }, tag);
    put('hub', 'library/alpine', 'latest', 1);
    put('hub', 'library/alpine', '3.19', 2);
    put('hub', 'library/busybox', 'latest', 3);
    put('ghcr', 'library/alpine', 'latest', 4);
    expect(m.cachedTags('hub', 'library/alpine')).toEqual(['3.19', 'latest']);
    expect(m.getTag('ghcr', 'library/alpine', 'latest')?.digest).toBe(digestOf(4));
    expect(m.getTag('hub', 'library/busybox', 'latest')?.digest).toBe(digestOf(3));
  });

  it('touches and deletes tags', () => {
    const c = clock();
    const m = open({ now: c.now });
    m.putManifest({ digest: digestOf(1), mediaType: OCI_MANIFEST, bytes: Buffer.from('x') }, HUB, 'latest');
    c.advance(1000);
    m.touchTag('hub', 'library/alpine', 'latest');
    expect(m.getTag('hub', 'library/alpine', 'latest')?.fetchedAt).toBe(c.now());
    m.touchTag('hub', 'library/alpine', 'latest', 5);
    expect(m.getTag('hub', 'library/alpine', 'latest')?.fetchedAt).toBe(5);
    m.deleteTag('hub', 'library/alpine', 'latest');
    expect(m.getTag('hub', 'library/alpine', 'latest')).toBeUndefined();
    expect(m.getManifest(digestOf(1))).toBeDefined();
  });

  it('adds a link once, however often it is put', () => {
    const m = open();
    m.putLink('hub', 'r', digestOf(1));
    m.putLink('hub', 'r', digestOf(1));
    expect(m.hasLink('hub', 'r', digestOf(1))).toBe(true);
    expect(m.links.deleteTo(digestOf(1))).toEqual([{ upstream: 'hub', repo: 'r', digest: digestOf(1) }]);
  });
});

describe('Metadata: lists', () => {
  it('stores a list response and replaces it when stored again', () => {
    const c = clock();
    const m = open({ now: c.now });
    m.putList('hub', 'tags:library/alpine', { status: 200, contentType: 'application/json', link: null, body: Buffer.from('{"tags":[]}') });
    c.advance(10);
    m.putList('hub', 'tags:library/alpine', { status: 200, contentType: 'application/json', link: '</v2/x?last=a>; rel="next"', body: Buffer.from('{"tags":["a"]}') });
    const got = m.getList('hub', 'tags:library/alpine');
    expect(got).toMatchObject({ status: 200, contentType: 'application/json', link: '</v2/x?last=a>; rel="next"', fetchedAt: c.now() });
    expect(got?.body.toString()).toBe('{"tags":["a"]}');
    expect(m.getList('ghcr', 'tags:library/alpine')).toBeUndefined();
  });
});

describe('Metadata: batched hits', () => {
  it('counts hits in memory until flush, then writes hits and last_access together', () => {
    const c = clock();
    const m = open({ now: c.now });
    m.putBlob({ digest: digestOf(1), size: 1, mediaType: null });
    m.putManifest({ digest: digestOf(2), mediaType: OCI_MANIFEST, bytes: Buffer.from('m') }, HUB);
    const createdAt = c.now();
    for (let i = 0; i < 3; i++) m.recordBlobHit(digestOf(1));
    m.recordManifestHit(digestOf(2));
    m.recordManifestHit(digestOf(2));
    expect(row(m, 'blobs', digestOf(1))).toMatchObject({ hits: 0, lastAccess: createdAt });
    expect(row(m, 'manifests', digestOf(2))).toMatchObject({ hits: 0, lastAccess: createdAt });
    c.advance(30_000);
    m.flush();
    expect(row(m, 'blobs', digestOf(1))).toMatchObject({ hits: 3, lastAccess: c.now() });
    expect(row(m, 'manifests', digestOf(2))).toMatchObject({ hits: 2, lastAccess: c.now() });
  });

  it('writes each pending hit once: a second flush adds nothing', () => {
    const m = open();
    m.putBlob({ digest: digestOf(1), size: 1, mediaType: null });
    m.recordBlobHit(digestOf(1));
    m.flush();
    m.flush();
    expect(row(m, 'blobs', digestOf(1))?.hits).toBe(1);
    m.recordBlobHit(digestOf(1));
    m.flush();
    expect(row(m, 'blobs', digestOf(1))?.hits).toBe(2);
  });

  it('writes all pending hits in one transaction', () => {
    const m = open();
    for (const n of [1, 2, 3]) {
      m.putBlob({ digest: digestOf(n), size: n, mediaType: null });
      m.recordBlobHit(digestOf(n));
    }
    const transaction = vi.spyOn(m, 'transaction');
    m.flush();
    expect(transaction).toHaveBeenCalledTimes(1);
    for (const n of [1, 2, 3]) expect(row(m, 'blobs', digestOf(n))?.hits).toBe(1);
  });

  it('ignores hits for digests it does not hold', () => {
    const m = open();
    m.recordBlobHit(digestOf(9));
    m.recordManifestHit(digestOf(9));
    expect(() => m.flush()).not.toThrow();
    expect(m.getBlob(digestOf(9))).toBeUndefined();
  });

  it('flushes on its own timer', async () => {
    const m = open({ flushIntervalMs: 10 });
    m.putBlob({ digest: digestOf(1), size: 1, mediaType: null });
    m.recordBlobHit(digestOf(1));
    await vi.waitFor(() => expect(row(m, 'blobs', digestOf(1))?.hits).toBe(1), { timeout: 2000, interval: 10 });
  });
});

describe('Metadata: transactions', () => {
  it('commits writes made through several query modules together, or none of them', () => {
    const m = open();
    const write = (fail: boolean) =>
      m.transaction(() => {
        m.putBlob({ digest: digestOf(1), size: 1, mediaType: null });
        m.tags.put({ upstream: 'hub', repo: 'r', tag: 't' }, { digest: digestOf(2), mediaType: OCI_MANIFEST, fetchedAt: 0 });
        if (fail) throw new Error('abort');
        return 'done';
      });
    expect(() => write(true)).toThrow('abort');
    expect(m.getBlob(digestOf(1))).toBeUndefined();
    expect(m.getTag('hub', 'r', 't')).toBeUndefined();
    expect(write(false)).toBe('done');
    expect(m.getBlob(digestOf(1))).toBeDefined();
    expect(m.getTag('hub', 'r', 't')?.digest).toBe(digestOf(2));
  });
});

describe('Metadata: durability', () => {
  it('keeps everything, including unflushed hits, across close and reopen', () => {
    const first = new Metadata(file, { flushIntervalMs: 3_600_000 });
    first.putBlob({ digest: digestOf(1), size: 42, mediaType: null }, HUB);
    first.putManifest({ digest: digestOf(2), mediaType: OCI_MANIFEST, bytes: Buffer.from([0, 1, 2, 255]) }, HUB, 'latest');
    first.putList('hub', 'k', { status: 200, contentType: null, link: null, body: Buffer.from('b') });
    first.recordBlobHit(digestOf(1));
    first.close();
    expect(first.open).toBe(false);

    const again = open();
    expect(again.getBlob(digestOf(1))).toEqual({ digest: digestOf(1), size: 42, mediaType: null });
    expect([...again.getManifest(digestOf(2))!.bytes]).toEqual([0, 1, 2, 255]);
    expect(again.getTag('hub', 'library/alpine', 'latest')?.digest).toBe(digestOf(2));
    expect(again.hasLink('hub', 'library/alpine', digestOf(1))).toBe(true);
    expect(again.getList('hub', 'k')?.body.toString()).toBe('b');
    expect(row(again, 'blobs', digestOf(1))?.hits).toBe(1);
  });

  it('may be closed twice', () => {
    const m = new Metadata(file);
    m.close();
    expect(() => m.close()).not.toThrow();
  });

  it('uses WAL journaling', () => {
    open();
    expect(withRawDatabase(file, (db) => db.pragma('journal_mode', { simple: true }))).toBe('wal');
  });

  it('refuses a database written by another schema version', () => {
    const db = new Database(file);
    db.pragma('user_version = 99');
    db.close();
    expect(() => new Metadata(file)).toThrow(/schema version 99 is not supported/);
  });
});
