/**
 * @module test/unit/cache/blobs/fill-fixture
 * A blob fill without HTTP or an upstream: a BlobFill on a temp file whose upstream body is a
 * PassThrough the test writes to, and fill writers that fail like a full disk (ENOSPC) once the
 * temp file would grow past a limit.
 */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { BlobFill, type FillResult, type ResumeBody } from '../../../../src/cache/blobs/blob-fill.ts';
import { nodeFillWriter, type FillWriter } from '../../../../src/cache/blobs/fill-writer.ts';
import { parseDigest } from '../../../../src/registry/digest.ts';

export const digestOf = (bytes: Buffer) => parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`);

export interface FillUnderTest {
  fill: BlobFill;
  /** The upstream body: write to it, end it, or destroy it. */
  upstream: PassThrough;
  /** Settles with the fill's result, or its error (never rejects). */
  result: Promise<FillResult | Error>;
  tempPath: string;
}

let sequence = 0;

/**
 * A fill of `content` (its digest and, unless `expectedSize` says otherwise, its size), into a
 * temp file under `dir`, running from the start.
 */
export function startFill(dir: string, content: Buffer, opts: { expectedSize?: number | null; writer?: FillWriter; onDiskFull?: (err: Error) => void; resume?: ResumeBody } = {}): FillUnderTest {
  const tempPath = path.join(dir, `fill-${process.pid}-${++sequence}`);
  const fill = new BlobFill({
    digest: digestOf(content),
    expectedSize: opts.expectedSize === null ? undefined : (opts.expectedSize ?? content.length),
    tempPath,
    source: 'test',
    ...(opts.writer ? { writer: opts.writer } : {}),
    ...(opts.onDiskFull ? { onDiskFull: opts.onDiskFull } : {}),
  });
  const upstream = new PassThrough();
  const result = fill.run(upstream, opts.resume).then(
    (r) => r,
    (err: Error) => err,
  );
  return { fill, upstream, result, tempPath };
}

/** Writes `chunk` upstream and resolves once the fill has stored (or relayed) through `until` bytes. */
export async function feed(t: FillUnderTest, chunk: Buffer, until = t.fill.written + chunk.length): Promise<void> {
  t.upstream.write(chunk);
  await waitWritten(t.fill, until);
}

/** Resolves once the fill has `bytes` written, or it ended (bounded by the test's timeout). */
export async function waitWritten(fill: BlobFill, bytes: number): Promise<void> {
  while (fill.written < bytes && fill.state === 'running') {
    await new Promise<void>((resolve) => fill.onProgress(resolve));
  }
}

/** Bytes [start, end) of the file open as `fd`. */
export function readRange(fd: number, start: number, end: number): Buffer {
  const out = Buffer.alloc(end - start);
  let n = 0;
  while (n < out.length) {
    const read = readSync(fd, out, n, out.length - n, start + n);
    if (read === 0) break;
    n += read;
  }
  return out.subarray(0, n);
}

/**
 * Node's fill writer on a disk that holds `capacity` bytes of the temp file: a batch that would
 * grow it past that is hashed (as the real writers do before writing) and fails with ENOSPC.
 */
export function diskFullWriter(capacity: number): FillWriter & { failures: number } {
  const inner = nodeFillWriter();
  const writer = {
    failures: 0,
    async write(chunks: Buffer[], fd: number | undefined, position: number): Promise<void> {
      const bytes = chunks.reduce((n, c) => n + c.length, 0);
      if (fd !== undefined && position + bytes > capacity) {
        await inner.write(chunks, undefined, 0);
        writer.failures++;
        throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      }
      await inner.write(chunks, fd, position);
    },
    digest: () => inner.digest(),
  };
  return writer;
}
