/**
 * @module cache/blobs/fill-stream
 * A fill's reader (cache/blobs/blob-fill) as a Node Readable, for consumers inside the process
 * that take streams rather than write to a socket: the copy of a fill into the shared bucket
 * (cache/bucket/bucket-tier). Like a client, it reads the temp file behind the fill and gets the
 * final byte only once the digest is verified, so what it streams ends cleanly only when right.
 */
import fs from 'node:fs';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import type { FillBody } from './blob-body.ts';

const read = promisify(fs.read);

/** Bytes per read: the size of a bucket upload's pieces is the consumer's business. */
const CHUNK = 1 << 20;

/** Streams `reader`'s range; the reader is released when the stream ends or is destroyed. */
export function fillStream(reader: FillBody): Readable {
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      void pump(this, reader);
    },
    destroy(err, callback) {
      reader.release();
      callback(err);
    },
  });
}

async function pump(stream: Readable, reader: FillBody): Promise<void> {
  try {
    for (;;) {
      const w = reader.window();
      if (w.kind === 'failed') throw w.error ?? new Error('the fill failed');
      if (w.kind === 'done') {
        stream.push(null);
        return;
      }
      // Relayed bytes (a full local disk) are handed to socket readers only; this copy gives up.
      if (w.kind === 'queue') throw new Error('the local disk is full: the fill is relayed, not copied');
      if (w.kind === 'wait') {
        await reader.progress();
        continue;
      }
      const want = Math.min(CHUNK, w.limit - reader.position);
      const buffer = Buffer.allocUnsafe(want);
      const { bytesRead } = await read(w.fd, buffer, 0, want, reader.position);
      if (bytesRead === 0) throw new Error(`the fill's temp file ended at ${reader.position}`);
      reader.advance(reader.position + bytesRead);
      stream.push(buffer.subarray(0, bytesRead));
      return;
    }
  } catch (err) {
    stream.destroy(err as Error);
  }
}
