/**
 * @module cache/uploads/upload-append
 * Streams one request body onto the end of an upload's data file: never more than a write
 * batch of it in memory, hashed as it goes by the fill writer (cache/blobs/fill-writer: with the
 * native addon, hash and write on a threadpool thread, as fills do), and all or nothing. A body longer or shorter than
 * declared, a full disk or a client gone mid-body leaves the file cut back to where it was, so
 * the session's acknowledged size stays true.
 */
import fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { RegistryError } from '../../registry/errors.ts';
import { WRITE_PIECE, type FillWriter } from '../blobs/fill-writer.ts';

/** Buffers per writev, well under IOV_MAX (1024), for bodies arriving in many tiny chunks. */
const MAX_BUFFERS = 64;

export interface AppendLimits {
  /** The length the client declared (Content-Range or Content-Length); undefined when it did not. */
  expected?: number | undefined;
  /** The most one body may hold. */
  max?: number | undefined;
}

/**
 * Writes `body` at `start` of `file` through `writer`, which hashes every byte it writes; returns
 * the number of bytes. On any failure the file is truncated back to `start` and the error thrown;
 * the writer's hash has then seen bytes that are gone, so callers drop it.
 */
export async function appendBody(file: string, start: number, body: Readable, writer: FillWriter, limits: AppendLimits = {}): Promise<number> {
  const { expected, max } = limits;
  const handle = await fsp.open(file, 'r+');
  let received = 0;
  try {
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let position = start;
    const flush = async () => {
      await writer.write(batch, handle.fd, position);
      position += batchBytes;
      batch = [];
      batchBytes = 0;
    };
    // The request stream is not destroyed when this stops early: the HTTP layer still answers on it.
    for await (const piece of body.iterator({ destroyOnReturn: false })) {
      const chunk: Buffer = Buffer.isBuffer(piece) ? piece : Buffer.from(piece as Uint8Array | string);
      received += chunk.length;
      if (expected !== undefined && received > expected) throw lengthError(expected, received, 'more');
      if (max !== undefined && received > max) {
        throw new RegistryError('BLOB_UPLOAD_INVALID', { message: `a chunk may hold at most ${max} bytes`, detail: { max } });
      }
      batch.push(chunk);
      batchBytes += chunk.length;
      // Bounded batches: memory stays flat however large the body, and writes stay at the size
      // the fill writer found cheapest for the page cache (cache/blobs/fill-writer).
      if (batchBytes >= WRITE_PIECE || batch.length >= MAX_BUFFERS) await flush();
    }
    if (batchBytes > 0) await flush();
    if (expected !== undefined && received !== expected) throw lengthError(expected, received, 'fewer');
    return received;
  } catch (err) {
    await handle.truncate(start);
    throw err;
  } finally {
    await handle.close();
  }
}

function lengthError(expected: number, received: number, what: 'more' | 'fewer'): RegistryError {
  return new RegistryError('BLOB_UPLOAD_INVALID', {
    message: `the body held ${what} bytes than the ${expected} declared by Content-Range or Content-Length`,
    detail: { expected, received: what === 'more' ? `more than ${expected}` : received },
  });
}
