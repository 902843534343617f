/**
 * @module test/unit/cache/upload-store
 * Blob upload sessions against a real temp data directory, real files and a real SQLite
 * database: chunks in order only and all or nothing, a digest check before anything enters the
 * blob store, sessions that survive a restart (the running hash then rebuilt from disk), ids that
 * can name nothing but a session of the asking repository, flat memory for a large upload, and a
 * full disk (a real small tmpfs, when this user may mount one) that leaves the session intact.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../../src/cache/blobs/blob-store.ts';
import { Metadata } from '../../../src/cache/metadata/metadata.ts';
import { dataPaths, type DataPaths } from '../../../src/cache/paths.ts';
import { parseContentRange, uploadRange } from '../../../src/registry/upload-range.ts';
import { UploadStore, type UploadStoreOptions } from '../../../src/cache/uploads/upload-store.ts';
import { silentLogger } from '../../../src/util/logger.ts';
import { nativeAddon } from '../../../src/util/native-addon.ts';
import { TestClock } from '../../helpers/clock.ts';
import { rejection, thrown } from '../../helpers/thrown.ts';
import { mountSmallDisk, unmountSmallDisk } from '../../helpers/small-disk.ts';

const REG = 'registry.internal';
const REPO = 'team/app';
const MiB = 1 << 20;

const digestOf = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const body = (bytes: Buffer | string) => Readable.from([Buffer.from(bytes)]);
const content = (size: number, seed = 7) => {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
};

interface Fixture {
  root: string;
  paths: DataPaths;
  store: BlobStore;
  metadata: Metadata;
  clock: TestClock;
  uploads: UploadStore;
  diskFull: Array<{ what: string; needed: number; error: Error }>;
  /** A new UploadStore on the same directory, as after a restart. */
  reopen(): Promise<UploadStore>;
}

async function openFixture(root: string, extra: Partial<UploadStoreOptions> = {}): Promise<Fixture> {
  const paths = dataPaths(root);
  const store = new BlobStore(paths);
  await store.init();
  const clock = new TestClock(1_700_000_000_000);
  const metadata = new Metadata(paths.database, { flushIntervalMs: 3_600_000, now: clock.now });
  const diskFull: Fixture['diskFull'] = [];
  const make = async () => {
    const u = new UploadStore({ paths, store, metadata, log: silentLogger, now: clock.now, onDiskFull: (i) => diskFull.push(i), ...extra });
    await u.init();
    return u;
  };
  return { root, paths, store, metadata, clock, uploads: await make(), diskFull, reopen: make };
}

let f: Fixture;

beforeEach(async () => {
  f = await openFixture(await mkdtemp(path.join(tmpdir(), 'ocimirror-uploads-')));
});

afterEach(async () => {
  f.metadata.close();
  await rm(f.root, { recursive: true, force: true });
});

const blobBytes = async (digest: string) => readFile(f.paths.blobFile(digest.slice('sha256:'.length)));
const uploadEntries = async () => readdir(f.paths.uploads);

describe('chunked uploads', () => {
  it('accepts chunks in order and commits the whole blob on finish', async () => {
    const bytes = content(10_000);
    const s = await f.uploads.create(REG, REPO);
    expect(s.size).toBe(0);
    expect(await f.uploads.append(s.id, REG, REPO, body(bytes.subarray(0, 4000)), { range: { start: 0, end: 3999 }, contentLength: 4000 })).toBe(4000);
    expect(await f.uploads.append(s.id, REG, REPO, body(bytes.subarray(4000, 9000)), { range: parseContentRange('4000-8999') })).toBe(9000);
    expect(f.uploads.get(s.id, REG, REPO).size).toBe(9000);
    const done = await f.uploads.finish(s.id, REG, REPO, digestOf(bytes), body(bytes.subarray(9000)), { range: { start: 9000, end: 9999 } });
    expect(done).toEqual({ digest: digestOf(bytes), size: 10_000, existed: false });
    expect(f.metadata.getBlob(digestOf(bytes))).toEqual({ digest: digestOf(bytes), size: 10_000, mediaType: null });
    expect((await blobBytes(digestOf(bytes))).equals(bytes)).toBe(true);
    expect(await uploadEntries()).toEqual([]);
    expect(thrown(() => f.uploads.get(s.id, REG, REPO)).code).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('finishes with a PUT that carries no body once every chunk was sent', async () => {
    const bytes = content(3000);
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body(bytes));
    expect(await f.uploads.finish(s.id, REG, REPO, digestOf(bytes))).toMatchObject({ size: 3000 });
    expect((await blobBytes(digestOf(bytes))).equals(bytes)).toBe(true);
  });

  it('commits an empty blob', async () => {
    const s = await f.uploads.create(REG, REPO);
    const empty = Buffer.alloc(0);
    expect(await f.uploads.finish(s.id, REG, REPO, digestOf(empty), body(empty), { contentLength: 0 })).toMatchObject({ size: 0 });
    expect(f.metadata.getBlob(digestOf(empty))?.size).toBe(0);
  });

  it('refuses an out-of-order chunk with 416 and the current range, keeping the size', async () => {
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body('abcd'), { range: { start: 0, end: 3 } });
    for (const range of [{ start: 0, end: 3 }, { start: 5, end: 9 }, { start: 3, end: 3 }]) {
      const err = await rejection(f.uploads.append(s.id, REG, REPO, body('x'.repeat(range.end - range.start + 1)), { range }));
      expect(err.code).toBe('RANGE_INVALID');
      expect(err.status).toBe(416);
      expect(err.headers).toMatchObject({ Range: '0-3' });
    }
    expect(f.uploads.get(s.id, REG, REPO).size).toBe(4);
    expect(statSync(f.paths.uploadData(s.id)).size).toBe(4);
    await f.uploads.append(s.id, REG, REPO, body('efg'), { range: { start: 4, end: 6 } });
    expect((await f.uploads.finish(s.id, REG, REPO, digestOf(Buffer.from('abcdefg')))).size).toBe(7);
  });

  it('refuses a body shorter or longer than declared and keeps the previous size and hash', async () => {
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body('hello '));
    const short = await rejection(f.uploads.append(s.id, REG, REPO, body('wor'), { range: { start: 6, end: 10 } }));
    expect(short.code).toBe('BLOB_UPLOAD_INVALID');
    const long = await rejection(f.uploads.append(s.id, REG, REPO, body('world and more'), { contentLength: 5 }));
    expect(long.code).toBe('BLOB_UPLOAD_INVALID');
    const disagree = await rejection(f.uploads.append(s.id, REG, REPO, body('world'), { range: { start: 6, end: 10 }, contentLength: 4 }));
    expect(disagree.code).toBe('BLOB_UPLOAD_INVALID');
    expect(f.uploads.get(s.id, REG, REPO).size).toBe(6);
    expect(await readFile(f.paths.uploadData(s.id), 'utf8')).toBe('hello ');
    // The running hash saw the refused bytes' copies only: finishing still matches.
    await f.uploads.append(s.id, REG, REPO, body('world'), { range: { start: 6, end: 10 }, contentLength: 5 });
    expect((await f.uploads.finish(s.id, REG, REPO, digestOf(Buffer.from('hello world')))).size).toBe(11);
  });

  it('refuses a second writer while a chunk is still arriving', async () => {
    const s = await f.uploads.create(REG, REPO);
    const slow = new PassThrough();
    const first = f.uploads.append(s.id, REG, REPO, slow);
    slow.write(Buffer.from('first '));
    const second = await rejection(f.uploads.append(s.id, REG, REPO, body('second')));
    expect(second.code).toBe('RANGE_INVALID');
    expect((await rejection(f.uploads.finish(s.id, REG, REPO, digestOf(Buffer.from('x'))))).code).toBe('RANGE_INVALID');
    expect((await rejection(f.uploads.cancel(s.id, REG, REPO))).code).toBe('RANGE_INVALID');
    slow.end(Buffer.from('chunk'));
    expect(await first).toBe(11);
    expect(await f.uploads.append(s.id, REG, REPO, body('!'))).toBe(12);
    expect(await readFile(f.paths.uploadData(s.id), 'utf8')).toBe('first chunk!');
  });

  it('refuses a chunk larger than maxChunk before and while reading it', async () => {
    const limited = new UploadStore({ paths: f.paths, store: f.store, metadata: f.metadata, log: silentLogger, maxChunk: 8 });
    await limited.init();
    const s = await limited.create(REG, REPO);
    expect((await rejection(limited.append(s.id, REG, REPO, body('123456789'), { contentLength: 9 }))).code).toBe('BLOB_UPLOAD_INVALID');
    expect((await rejection(limited.append(s.id, REG, REPO, body('123456789')))).code).toBe('BLOB_UPLOAD_INVALID');
    expect(limited.get(s.id, REG, REPO).size).toBe(0);
    expect(await limited.append(s.id, REG, REPO, body('12345678'))).toBe(8);
  });
});

describe('finishing', () => {
  it('removes the upload and commits nothing when the digest does not match', async () => {
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body('real content'));
    const wrong = digestOf(Buffer.from('other content'));
    const err = await rejection(f.uploads.finish(s.id, REG, REPO, wrong));
    expect(err.code).toBe('DIGEST_INVALID');
    expect(err.status).toBe(400);
    expect(f.metadata.getBlob(wrong)).toBeUndefined();
    expect(f.metadata.getBlob(digestOf(Buffer.from('real content')))).toBeUndefined();
    expect(await readdir(f.paths.blobsRoot)).toEqual([]);
    expect(await uploadEntries()).toEqual([]);
    expect(thrown(() => f.uploads.get(s.id, REG, REPO)).code).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('refuses an unsupported or malformed digest and keeps the session for a retry', async () => {
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body('data'));
    for (const digest of [`sha512:${'a'.repeat(128)}`, 'sha256:XYZ', '', '../../etc/passwd']) {
      expect((await rejection(f.uploads.finish(s.id, REG, REPO, digest))).code).toBe('DIGEST_INVALID');
    }
    expect(f.uploads.get(s.id, REG, REPO).size).toBe(4);
    expect((await f.uploads.finish(s.id, REG, REPO, digestOf(Buffer.from('data')))).size).toBe(4);
  });

  it('drops the upload when the blob is already stored, leaving the stored one untouched', async () => {
    const bytes = content(5000);
    const first = await f.uploads.create(REG, REPO);
    await f.uploads.finish(first.id, REG, REPO, digestOf(bytes), body(bytes));
    const before = f.metadata.blobs.access(digestOf(bytes));
    f.clock.advance(60_000);
    const linked: string[] = [];
    const second = await f.uploads.create(REG, 'team/other');
    const done = await f.uploads.finish(second.id, REG, 'team/other', digestOf(bytes), body(bytes), { onCommit: (b) => linked.push(`${b.digest} ${b.size}`) });
    expect(done).toEqual({ digest: digestOf(bytes), size: 5000, existed: true });
    expect(linked).toEqual([`${digestOf(bytes)} 5000`]);
    expect(f.metadata.blobs.access(digestOf(bytes))).toEqual(before);
    expect((await blobBytes(digestOf(bytes))).equals(bytes)).toBe(true);
    expect(await uploadEntries()).toEqual([]);
  });

  it('runs the commit hook in the blob row transaction: when it throws, nothing is committed and the upload stays', async () => {
    const bytes = content(2000);
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body(bytes));
    const refuse = () => {
      throw new Error('over quota');
    };
    await expect(f.uploads.finish(s.id, REG, REPO, digestOf(bytes), undefined, { onCommit: refuse })).rejects.toThrow('over quota');
    expect(f.metadata.getBlob(digestOf(bytes))).toBeUndefined();
    expect(existsSync(f.paths.blobFile(digestOf(bytes).slice(7)))).toBe(false);
    expect(f.uploads.get(s.id, REG, REPO).size).toBe(2000);
    const seen: number[] = [];
    await f.uploads.finish(s.id, REG, REPO, digestOf(bytes), undefined, { onCommit: (b) => seen.push(b.size) });
    expect(seen).toEqual([2000]);
    expect(f.metadata.getBlob(digestOf(bytes))?.size).toBe(2000);
  });
});

describe('monolithic uploads', () => {
  it('stores a whole blob in one call and leaves no session behind', async () => {
    const bytes = content(70_000);
    expect(await f.uploads.putMonolithic(REG, REPO, digestOf(bytes), body(bytes), { contentLength: 70_000 })).toEqual({ digest: digestOf(bytes), size: 70_000, existed: false });
    expect((await blobBytes(digestOf(bytes))).equals(bytes)).toBe(true);
    expect(await uploadEntries()).toEqual([]);
    expect(f.uploads.size).toBe(0);
  });

  it('leaves nothing behind when the digest or the length is wrong', async () => {
    const bytes = content(1000);
    expect((await rejection(f.uploads.putMonolithic(REG, REPO, digestOf(Buffer.from('no')), body(bytes)))).code).toBe('DIGEST_INVALID');
    expect((await rejection(f.uploads.putMonolithic(REG, REPO, digestOf(bytes), body(bytes), { contentLength: 999 }))).code).toBe('BLOB_UPLOAD_INVALID');
    expect((await rejection(f.uploads.putMonolithic(REG, REPO, 'md5:abc', body(bytes)))).code).toBe('DIGEST_INVALID');
    expect(await uploadEntries()).toEqual([]);
    expect(f.uploads.size).toBe(0);
    expect(await readdir(f.paths.blobsRoot)).toEqual([]);
  });
});

describe('restarts', () => {
  it('resumes a session in a new store and finishes it by hashing the data from disk', async () => {
    const bytes = content(300_000);
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body(bytes.subarray(0, 100_000)), { range: { start: 0, end: 99_999 } });
    const restarted = await f.reopen();
    expect(restarted.get(s.id, REG, REPO)).toEqual(f.uploads.get(s.id, REG, REPO));
    expect((await rejection(restarted.append(s.id, REG, REPO, body('x'), { range: { start: 0, end: 0 } }))).headers).toMatchObject({ Range: '0-99999' });
    await restarted.append(s.id, REG, REPO, body(bytes.subarray(100_000, 250_000)), { range: { start: 100_000, end: 249_999 } });
    const again = await f.reopen();
    expect(again.get(s.id, REG, REPO).size).toBe(250_000);
    expect(await again.finish(s.id, REG, REPO, digestOf(bytes), body(bytes.subarray(250_000)))).toMatchObject({ size: 300_000, existed: false });
    expect((await blobBytes(digestOf(bytes))).equals(bytes)).toBe(true);
  });

  it('cuts off bytes past the acknowledged size, as a crash mid-chunk leaves them', async () => {
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body('acknowledged'));
    await appendFile(f.paths.uploadData(s.id), 'half a chunk');
    const restarted = await f.reopen();
    expect(restarted.get(s.id, REG, REPO).size).toBe(12);
    expect(await readFile(f.paths.uploadData(s.id), 'utf8')).toBe('acknowledged');
    expect((await restarted.finish(s.id, REG, REPO, digestOf(Buffer.from('acknowledged')))).size).toBe(12);
  });

  it('resumes from what the data file holds when it is shorter than the record', async () => {
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body('0123456789'));
    await writeFile(f.paths.uploadData(s.id), '01234');
    const restarted = await f.reopen();
    expect(restarted.get(s.id, REG, REPO).size).toBe(5);
    expect(JSON.parse(await readFile(f.paths.uploadSession(s.id), 'utf8'))).toMatchObject({ size: 5, registry: REG, repo: REPO });
  });

  it('removes at start-up what is not a readable session', async () => {
    const good = await f.uploads.create(REG, REPO);
    const noRecord = await f.uploads.create(REG, REPO);
    const garbled = await f.uploads.create(REG, REPO);
    const noData = await f.uploads.create(REG, REPO);
    await rm(f.paths.uploadSession(noRecord.id));
    await writeFile(f.paths.uploadSession(garbled.id), '{"registry": "x"');
    await rm(f.paths.uploadData(noData.id));
    await mkdir(path.join(f.paths.uploads, 'not-a-uuid'));
    await writeFile(path.join(f.paths.uploads, 'stray-file'), 'x');
    const restarted = new UploadStore({ paths: f.paths, store: f.store, metadata: f.metadata, log: silentLogger });
    expect(await restarted.init()).toEqual({ sessions: 1, removed: 5 });
    expect(await uploadEntries()).toEqual([good.id]);
    for (const gone of [noRecord, garbled, noData]) expect(thrown(() => restarted.get(gone.id, REG, REPO)).code).toBe('BLOB_UPLOAD_UNKNOWN');
  });
});

describe('session ids and ownership', () => {
  it('answers BLOB_UPLOAD_UNKNOWN to ids that are not upload ids, touching no file', async () => {
    const s = await f.uploads.create(REG, REPO);
    const ids = ['../../etc', '', 'a'.repeat(100_000), s.id.toUpperCase(), `${s.id}/..`, `../uploads/${s.id}`, '00000000-0000-0000-0000-000000000000', s.id.replace(/-/g, '')];
    for (const id of ids) {
      expect(thrown(() => f.uploads.get(id, REG, REPO)).code).toBe('BLOB_UPLOAD_UNKNOWN');
      expect((await rejection(f.uploads.append(id, REG, REPO, body('x')))).code).toBe('BLOB_UPLOAD_UNKNOWN');
      expect((await rejection(f.uploads.finish(id, REG, REPO, digestOf(Buffer.from('x'))))).code).toBe('BLOB_UPLOAD_UNKNOWN');
      expect((await rejection(f.uploads.cancel(id, REG, REPO))).code).toBe('BLOB_UPLOAD_UNKNOWN');
    }
    expect(thrown(() => f.uploads.get('a'.repeat(100_000), REG, REPO)).status).toBe(404);
    expect(await uploadEntries()).toEqual([s.id]);
    expect(() => f.paths.uploadDir('../../etc')).toThrow(/refusing/);
  });

  it("answers BLOB_UPLOAD_UNKNOWN to another repository's or registry's session id", async () => {
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body('mine'));
    for (const [registry, repo] of [[REG, 'team/other'], ['other.internal', REPO], [REG, 'team']]) {
      expect(thrown(() => f.uploads.get(s.id, registry!, repo!)).code).toBe('BLOB_UPLOAD_UNKNOWN');
      expect((await rejection(f.uploads.append(s.id, registry!, repo!, body('theirs')))).code).toBe('BLOB_UPLOAD_UNKNOWN');
      expect((await rejection(f.uploads.finish(s.id, registry!, repo!, digestOf(Buffer.from('mine'))))).code).toBe('BLOB_UPLOAD_UNKNOWN');
      expect((await rejection(f.uploads.cancel(s.id, registry!, repo!))).code).toBe('BLOB_UPLOAD_UNKNOWN');
    }
    expect(f.uploads.get(s.id, REG, REPO).size).toBe(4);
  });
});

describe('cancel and collect', () => {
  it('cancel removes the session and its data', async () => {
    const s = await f.uploads.create(REG, REPO);
    await f.uploads.append(s.id, REG, REPO, body('bytes'));
    await f.uploads.cancel(s.id, REG, REPO);
    expect(existsSync(f.paths.uploadDir(s.id))).toBe(false);
    expect(thrown(() => f.uploads.get(s.id, REG, REPO)).code).toBe('BLOB_UPLOAD_UNKNOWN');
    expect((await rejection(f.uploads.cancel(s.id, REG, REPO))).code).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('collect removes sessions idle longer than the age, by the injected clock', async () => {
    const idle = await f.uploads.create(REG, REPO);
    const active = await f.uploads.create(REG, REPO);
    f.clock.advance(50 * 60_000);
    await f.uploads.append(active.id, REG, REPO, body('still going'));
    f.clock.advance(20 * 60_000);
    expect(await f.uploads.collect(60 * 60_000)).toBe(1);
    expect(thrown(() => f.uploads.get(idle.id, REG, REPO)).code).toBe('BLOB_UPLOAD_UNKNOWN');
    expect(f.uploads.get(active.id, REG, REPO).size).toBe(11);
    expect(await uploadEntries()).toEqual([active.id]);
    f.clock.advance(60 * 60_000);
    expect(await f.uploads.collect(60 * 60_000)).toBe(1);
    expect(await uploadEntries()).toEqual([]);
  });

  it('collect keeps a session whose chunk is still arriving', async () => {
    const s = await f.uploads.create(REG, REPO);
    const slow = new PassThrough();
    const writing = f.uploads.append(s.id, REG, REPO, slow);
    f.clock.advance(24 * 3_600_000);
    expect(await f.uploads.collect(60_000)).toBe(0);
    slow.end(Buffer.from('done'));
    expect(await writing).toBe(4);
  });
});

describe('large uploads', () => {
  it('streams a 64 MiB upload to disk as it arrives, never holding more than a few MiB', async () => {
    const size = 64 * MiB;
    const piece = 64 << 10;
    const hash = createHash('sha256');
    const s = await f.uploads.create(REG, REPO);
    const data = f.paths.uploadData(s.id);
    let produced = 0;
    let maxAhead = 0;
    async function* source() {
      for (let i = 0; produced < size; i++) {
        // How far the producer is ahead of the file: what is held in memory between the two.
        maxAhead = Math.max(maxAhead, produced - statSync(data).size);
        const chunk = Buffer.alloc(piece, i & 0xff);
        chunk.writeUInt32BE(i, 0);
        hash.update(chunk);
        produced += piece;
        yield chunk;
      }
    }
    expect(await f.uploads.append(s.id, REG, REPO, Readable.from(source()), { contentLength: size })).toBe(size);
    expect(maxAhead).toBeLessThan(4 * MiB);
    const digest = `sha256:${hash.digest('hex')}`;
    expect(await f.uploads.finish(s.id, REG, REPO, digest)).toMatchObject({ digest, size });
    expect((await stat(f.paths.blobFile(digest.slice(7)))).size).toBe(size);
  });
});

describe('ranges', () => {
  it('parses the spec Content-Range and refuses anything else with 416', () => {
    expect(parseContentRange('0-499')).toEqual({ start: 0, end: 499 });
    expect(parseContentRange('bytes 500-999/*')).toEqual({ start: 500, end: 999 });
    for (const bad of ['', '5-4', '-5', '0-', 'a-b', '0-99999999999999999', '1-2-3']) {
      const err = thrown(() => parseContentRange(bad));
      expect(err.code).toBe('RANGE_INVALID');
      expect(err.status).toBe(416);
    }
    expect(uploadRange(0)).toBe('0-0');
    expect(uploadRange(10)).toBe('0-9');
  });
});

const probe = mountSmallDisk('1m');
if (probe) unmountSmallDisk(probe);

describe.skipIf(probe === undefined)('a full disk (a 4 MiB tmpfs; needs a root user who can mount one)', () => {
  it('answers UNAVAILABLE, tells the owner, and keeps the session at its last good size', async () => {
    const disk = mountSmallDisk('4m')!;
    const small = await openFixture(path.join(disk, 'data'));
    try {
      const first = content(MiB, 1);
      const s = await small.uploads.create(REG, REPO);
      await small.uploads.append(s.id, REG, REPO, body(first));
      const err = await rejection(small.uploads.append(s.id, REG, REPO, Readable.from((function* () {
        for (let i = 0; i < 128; i++) yield content(64 << 10, i);
      })()), { range: { start: MiB, end: 9 * MiB - 1 } }));
      expect(err.code).toBe('UNAVAILABLE');
      expect(err.status).toBe(503);
      expect(err.headers).toMatchObject({ Range: uploadRange(MiB) });
      expect(small.diskFull).toHaveLength(1);
      expect(small.diskFull[0]).toMatchObject({ needed: 8 * MiB });
      expect((small.diskFull[0]!.error as NodeJS.ErrnoException).code).toBe('ENOSPC');
      expect(small.uploads.get(s.id, REG, REPO).size).toBe(MiB);
      expect(statSync(small.paths.uploadData(s.id)).size).toBe(MiB);
      expect(await small.uploads.finish(s.id, REG, REPO, digestOf(first))).toMatchObject({ size: MiB });
      expect(small.metadata.getBlob(digestOf(first))?.size).toBe(MiB);
    } finally {
      small.metadata.close();
      unmountSmallDisk(disk);
    }
  });
});

describe.skipIf(nativeAddon() === undefined)('with the native addon (hash and write off the event loop)', () => {
  it('commits chunks hashed by the addon, and re-hashes after a refused chunk', async () => {
    const native = await openFixture(await mkdtemp(path.join(tmpdir(), 'ocimirror-uploads-native-')), { nativeAddon: nativeAddon() });
    try {
      const blob = content(3 * 256 * 1024 + 17);
      const s = await native.uploads.create(REG, REPO);
      await native.uploads.append(s.id, REG, REPO, body(blob.subarray(0, 300_000)), { range: { start: 0, end: 299_999 } });
      // Declared longer than sent: refused, cut back, and the live hash dropped with it.
      await expect(native.uploads.append(s.id, REG, REPO, body(blob.subarray(300_000, 400_000)), { contentLength: 200_000 })).rejects.toMatchObject({ code: 'BLOB_UPLOAD_INVALID' });
      await native.uploads.append(s.id, REG, REPO, body(blob.subarray(300_000)), {});
      expect(await native.uploads.finish(s.id, REG, REPO, digestOf(blob))).toMatchObject({ size: blob.length, existed: false });
      expect(await readFile(native.paths.blobFile(digestOf(blob).slice(7)))).toEqual(blob);
    } finally {
      native.metadata.close();
      await rm(native.root, { recursive: true, force: true });
    }
  });
});
