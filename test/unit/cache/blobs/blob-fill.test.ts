/**
 * The fill's state machine (src/cache/blobs/blob-fill.ts) without HTTP: an upstream body the test
 * writes to, readers asking what they may take. Bytes reach readers as they reach the temp file;
 * the final byte of every reader's range waits for the sha256 and size check; a wrong, short or
 * oversize body fails every reader and leaves no temp file; a full disk (an injected writer failing
 * with ENOSPC) turns the fill into a relay through bounded queues that commits nothing.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { FillBody } from '../../../../src/cache/blobs/blob-body.ts';
import type { FillResult } from '../../../../src/cache/blobs/blob-fill.ts';
import { RegistryError } from '../../../../src/registry/errors.ts';
import { diskFullWriter, feed, readRange, startFill, waitWritten, type FillUnderTest } from './fill-fixture.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-fill-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Everything `reader` may take now from the temp file (a `file` window), advancing it. */
function takeFile(reader: FillBody): Buffer {
  const w = reader.window();
  if (w.kind !== 'file') throw new Error(`expected a file window, got ${w.kind}`);
  const bytes = readRange(w.fd, reader.position, w.limit);
  reader.advance(w.limit);
  return bytes;
}

/** The fill's error once it failed (its result), asserting it did. */
async function failure(t: FillUnderTest): Promise<RegistryError> {
  const result = await t.result;
  expect(result).toBeInstanceOf(RegistryError);
  return result as RegistryError;
}

async function done(t: FillUnderTest, ...readers: FillBody[]): Promise<void> {
  for (const r of readers) r.release();
  t.fill.retire();
  await t.fill.closed;
}

describe('a blob fill', () => {
  it('lets a reader take bytes as they reach the temp file, all but the newest until the body is verified', async () => {
    const content = randomBytes(3000);
    const t = startFill(dir, content);
    const reader = t.fill.createReader();
    expect(reader.window().kind).toBe('wait');

    await feed(t, content.subarray(0, 1000));
    expect(reader.window()).toMatchObject({ kind: 'file', limit: 999, more: true });
    expect(takeFile(reader).equals(content.subarray(0, 999))).toBe(true);
    expect(reader.window().kind).toBe('wait');

    await feed(t, content.subarray(1000));
    // Every byte is on disk, but not yet known to be right: the last one waits.
    expect(t.fill.written).toBe(3000);
    expect(reader.window()).toMatchObject({ kind: 'file', limit: 2999 });
    expect(takeFile(reader).equals(content.subarray(999, 2999))).toBe(true);

    const verified = reader.progress();
    t.upstream.end();
    await verified;
    expect(t.fill.state).toBe('verified');
    expect(reader.window()).toMatchObject({ kind: 'file', limit: 3000, more: false });
    expect(takeFile(reader).equals(content.subarray(2999))).toBe(true);
    expect(reader.window().kind).toBe('done');
    expect(await t.result).toEqual<FillResult>({ size: 3000, committable: true });
    await done(t, reader);
  });

  it('fails every reader with the fill\'s error and removes the temp file when the sha256 does not match', async () => {
    const content = randomBytes(2000);
    const wrong = Buffer.from(content);
    wrong[1500] = wrong[1500]! ^ 0xff;
    const t = startFill(dir, content);
    const whole = t.fill.createReader();
    const range = t.fill.createReader(100, 199);
    await feed(t, wrong);
    // Everything but the last byte was readable, and not one byte more.
    expect(whole.window()).toMatchObject({ kind: 'file', limit: 1999 });
    const woken = whole.progress();
    t.upstream.end();
    await woken;
    const err = await failure(t);
    expect(err.code).toBe('BAD_GATEWAY');
    expect(err.message).toMatch(/does not match/);
    for (const r of [whole, range]) expect(r.window()).toEqual({ kind: 'failed', error: err });
    expect(existsSync(t.tempPath)).toBe(false);
    expect(() => t.fill.createReader()).toThrow(err);
    await done(t, whole, range);
  });

  it('fails every reader and removes the temp file when the body ends short of the announced size', async () => {
    const content = randomBytes(2000);
    const t = startFill(dir, content, { expectedSize: 2500 });
    const reader = t.fill.createReader();
    await feed(t, content);
    t.upstream.end();
    const err = await failure(t);
    expect(err.message).toMatch(/after 2000 of 2500 bytes/);
    expect(reader.window()).toMatchObject({ kind: 'failed', error: err });
    expect(existsSync(t.tempPath)).toBe(false);
    await done(t, reader);
  });

  it('fails every reader and removes the temp file when the body runs past the announced size', async () => {
    const content = randomBytes(2000);
    const t = startFill(dir, content, { expectedSize: 1500 });
    const reader = t.fill.createReader();
    t.upstream.write(content);
    const err = await failure(t);
    expect(err.message).toMatch(/more than the announced 1500 bytes/);
    expect(reader.window()).toMatchObject({ kind: 'failed', error: err });
    expect(existsSync(t.tempPath)).toBe(false);
    expect(t.upstream.destroyed).toBe(true);
    await done(t, reader);
  });

  it('fails every reader when the upstream connection breaks mid-body', async () => {
    const content = randomBytes(4000);
    const t = startFill(dir, content);
    const reader = t.fill.createReader();
    await feed(t, content.subarray(0, 1000));
    t.upstream.destroy(new Error('connection reset by peer'));
    const err = await failure(t);
    expect(err.message).toMatch(/connection reset/);
    expect(reader.window().kind).toBe('failed');
    expect(existsSync(t.tempPath)).toBe(false);
    await done(t, reader);
  });

  it('continues from the byte it got to when a resumable body breaks, and its reader gets every byte verified', async () => {
    const content = randomBytes(5000);
    const offsets: number[] = [];
    const rest = new PassThrough();
    const t = startFill(dir, content, {
      resume: async (offset) => {
        offsets.push(offset);
        return rest;
      },
    });
    const reader = t.fill.createReader();
    await feed(t, content.subarray(0, 1200));
    t.upstream.destroy(new Error('connection reset by peer'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(offsets).toEqual([1200]);
    rest.end(content.subarray(1200));
    expect(await t.result).toMatchObject({ size: 5000, committable: true });
    expect(takeFile(reader).equals(content)).toBe(true);
    await done(t, reader);
  });

  it('fails when what the resumed body sends does not complete the digest', async () => {
    const content = randomBytes(3000);
    const t = startFill(dir, content, { resume: async () => PassThrough.from([randomBytes(2000)]) as unknown as PassThrough });
    await feed(t, content.subarray(0, 1000));
    t.upstream.destroy(new Error('owner gone'));
    expect((await failure(t)).message).toMatch(/sha256 does not match/);
    expect(existsSync(t.tempPath)).toBe(false);
    await done(t);
  });

  it('fails with the resume\'s own error when the rest cannot be opened', async () => {
    const content = randomBytes(3000);
    const t = startFill(dir, content, { resume: () => Promise.reject(new RegistryError('UNAVAILABLE', { message: 'upstream down too' })) });
    await feed(t, content.subarray(0, 1000));
    t.upstream.destroy(new Error('owner gone'));
    expect((await failure(t)).message).toMatch(/upstream down too/);
    await done(t);
  });

  it('serves a reader behind the fill and one ahead of it, each from its own offset', async () => {
    const content = randomBytes(10_000);
    const t = startFill(dir, content);
    const behind = t.fill.createReader();
    const ahead = t.fill.createReader(6000);
    await feed(t, content.subarray(0, 4000));
    expect(ahead.window().kind).toBe('wait');
    expect(takeFile(behind).equals(content.subarray(0, 3999))).toBe(true);

    await feed(t, content.subarray(4000, 8000));
    expect(ahead.window()).toMatchObject({ kind: 'file', limit: 7999 });
    expect(takeFile(ahead).equals(content.subarray(6000, 7999))).toBe(true);

    await feed(t, content.subarray(8000));
    t.upstream.end();
    expect(await t.result).toEqual({ size: 10_000, committable: true });
    expect(Buffer.concat([takeFile(ahead)]).equals(content.subarray(7999))).toBe(true);
    expect(Buffer.concat([takeFile(behind)]).equals(content.subarray(3999))).toBe(true);
    expect([ahead.window().kind, behind.window().kind]).toEqual(['done', 'done']);
    await done(t, behind, ahead);
  });

  it('holds a Range reader\'s final byte until the body is verified, though every byte of it is on disk', async () => {
    const content = randomBytes(3000);
    const t = startFill(dir, content);
    const range = t.fill.createReader(100, 199);
    await feed(t, content.subarray(0, 2500));
    expect(range.window()).toMatchObject({ kind: 'file', limit: 199, more: true });
    expect(takeFile(range).equals(content.subarray(100, 199))).toBe(true);
    expect(range.window().kind).toBe('wait');

    await feed(t, content.subarray(2500));
    expect(range.window().kind).toBe('wait');
    t.upstream.end();
    await t.result;
    expect(range.window()).toMatchObject({ kind: 'file', limit: 200, more: false });
    expect(takeFile(range).equals(content.subarray(199, 200))).toBe(true);
    expect(range.window().kind).toBe('done');
    await done(t, range);
  });

  it('fails a Range reader that has all but its final byte when the body turns out corrupted elsewhere', async () => {
    const content = randomBytes(3000);
    const wrong = Buffer.from(content);
    wrong[2900] = wrong[2900]! ^ 1;
    const t = startFill(dir, content);
    const range = t.fill.createReader(0, 99);
    await feed(t, wrong);
    expect(takeFile(range).length).toBe(99);
    t.upstream.end();
    await failure(t);
    expect(range.window().kind).toBe('failed');
    await done(t, range);
  });

  it('wakes a waiting reader on progress, verification and failure alike', async () => {
    const content = randomBytes(100);
    const t = startFill(dir, content);
    const reader = t.fill.createReader();
    const progressed = reader.progress();
    t.upstream.write(content.subarray(0, 10));
    await progressed;
    expect(t.fill.written).toBeGreaterThan(0);
    const failed = reader.progress();
    // As the cache does on its timeout: fail the fill, then drop the upstream.
    t.fill.fail(new Error('fillTimeout exceeded'));
    t.upstream.destroy();
    await failed;
    expect(reader.window()).toMatchObject({ kind: 'failed', error: { code: 'BAD_GATEWAY' } });
    await failure(t);
    await done(t, reader);
  });
});

describe('a blob fill on a full disk', () => {
  it('relays the rest of the body to its readers through their queues, still verified, and commits nothing', async () => {
    const content = randomBytes(6000);
    const onDiskFull = vi.fn();
    const writer = diskFullWriter(2000);
    const t = startFill(dir, content, { writer, onDiskFull });
    const reader = t.fill.createReader();
    await feed(t, content.subarray(0, 1500));
    await feed(t, content.subarray(1500, 3000));
    expect(writer.failures).toBe(1);
    expect(onDiskFull).toHaveBeenCalledTimes(1);
    expect(onDiskFull.mock.calls[0]![0]).toMatchObject({ code: 'ENOSPC' });
    expect(t.fill.fileBytes).toBe(1500);

    // What reached the file comes from the file; the rest from the queue, the newest byte held.
    expect(reader.window()).toMatchObject({ kind: 'file', limit: 1500, more: false });
    const got = [takeFile(reader)];
    expect(reader.window()).toEqual({ kind: 'queue', limit: 2999 });
    got.push(reader.takeQueued(2999)!);
    expect(reader.position).toBe(2999);
    expect(reader.takeQueued(2999)).toBeUndefined();

    // Relayed bytes are gone once their readers took them: a new client cannot join this fill.
    expect(() => t.fill.createReader()).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));

    await feed(t, content.subarray(3000));
    t.upstream.end();
    expect(await t.result).toEqual({ size: 6000, committable: false });
    for (let w = reader.window(); w.kind === 'queue'; w = reader.window()) got.push(reader.takeQueued(w.limit)!);
    expect(reader.window().kind).toBe('done');
    expect(Buffer.concat(got).equals(content)).toBe(true);
    await done(t, reader);
  });

  it('fails its readers on a corrupted body while relaying', async () => {
    const content = randomBytes(4000);
    const wrong = Buffer.from(content);
    wrong[3500] = wrong[3500]! ^ 1;
    const t = startFill(dir, content, { writer: diskFullWriter(1000) });
    const reader = t.fill.createReader();
    await feed(t, wrong.subarray(0, 500));
    await feed(t, wrong.subarray(500));
    expect(t.fill.fileBytes).toBe(500);
    t.upstream.end();
    await failure(t);
    expect(reader.window().kind).toBe('failed');
    expect(existsSync(t.tempPath)).toBe(false);
    await done(t, reader);
  });

  it('pauses the upstream while a reader\'s queue is over its bound, and goes on once the reader takes or leaves', async () => {
    const MiB = 1 << 20;
    const content = randomBytes(12 * MiB);
    const t = startFill(dir, content, { writer: diskFullWriter(0) });
    const slow = t.fill.createReader();
    const gone = t.fill.createReader();
    for (let i = 0; i < 12; i++) t.upstream.write(content.subarray(i * MiB, (i + 1) * MiB));
    t.upstream.end();
    // The queue bound is 8 MiB: the relay stops just past it and stays there while nobody takes.
    await waitWritten(t.fill, 8 * MiB);
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(t.fill.written).toBeLessThan(12 * MiB);
    expect(t.fill.written).toBeLessThanOrEqual(10 * MiB);
    expect(slow.window().kind).toBe('queue');

    gone.release(); // a client leaving frees the relay from its queue, not from the others'
    const got: Buffer[] = [];
    while (t.fill.state === 'running' || slow.window().kind === 'queue') {
      const w = slow.window();
      if (w.kind === 'done') break;
      const part = w.kind === 'queue' ? slow.takeQueued(w.limit) : undefined;
      if (part) got.push(Buffer.from(part));
      else await slow.progress();
    }
    expect(await t.result).toEqual({ size: 12 * MiB, committable: false });
    expect(Buffer.concat(got).equals(content)).toBe(true);
    await done(t, slow);
  });
});
