/**
 * @module cache/blobs/fill-writer
 * A fill's sha256 and its temp-file writes, batch by batch.
 *
 * With the native addon the hash and the writes of a batch run on a libuv threadpool thread: during
 * a cold 512 MiB fill on a 2-core machine sha256 was 42 % of the event loop's time, the loop that
 * also receives the upstream's bytes and sends them on to the waiting clients (by sendfile, driven
 * from the loop). Without the addon, Node's crypto hashes on the loop and fs.writev writes.
 *
 * Either way the temp file is written in pieces of at most WRITE_PIECE bytes. The kernel sizes a
 * file's page-cache folios to the write (ext4 large folios, Linux 6.x), and large folios come from
 * high-order free memory, which a VM (virtio-balloon free page reporting) may have handed back to
 * its host: on the benchmark's 2-core VM, writing 512 MiB cost 0.08–0.13 s of CPU in writes of
 * 64–512 KiB, 0.58 s in 1 MiB writes and 1.5–2.0 s in 2–4 MiB ones (dd); a fill writing its 4 MiB
 * batches in one writev spent ~1.6 s of threadpool CPU per 512 MiB, in 256 KiB pieces ~0.3 s.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { NativeAddon } from '../../util/native-addon.ts';

/** Bytes per write(2), for both writers (the native one takes it as an argument). */
export const WRITE_PIECE = 256 << 10;

export interface FillWriter {
  /**
   * Hashes `chunks`, in order, then writes them at `position` of `fd`; with no
   * `fd`, only hashes (a fill relaying on a full disk). The whole batch is hashed even when the
   * write fails, so the caller never hashes it again. One call at a time: await each.
   */
  write(chunks: Buffer[], fd: number | undefined, position: number): Promise<void>;
  /** The sha256 of everything passed to `write`, hex. Ends the hash. */
  digest(): string;
}

/** The native writer when given the addon (loaded and switched on: server.nativeAddon), else the Node one. */
export function createFillWriter(addon: NativeAddon | undefined): FillWriter {
  return addon ? nativeFillWriter(addon) : nodeFillWriter();
}

/** Hash and writes on a threadpool thread (native/sendfile/hash-write.c). */
export function nativeFillWriter(addon: NativeAddon): FillWriter {
  const hasher = addon.hasher();
  return {
    write: (chunks, fd, position) =>
      new Promise<void>((resolve, reject) => addon.hashWrite(hasher, fd ?? -1, chunks, position, WRITE_PIECE, (err) => (err ? reject(err) : resolve()))),
    digest: () => addon.digest(hasher),
  };
}

/** Node's crypto on the event loop, fs.writev on the threadpool. */
export function nodeFillWriter(): FillWriter {
  const hash = createHash('sha256');
  return {
    write: async (chunks, fd, position) => {
      for (const chunk of chunks) hash.update(chunk);
      if (fd === undefined) return;
      // Every piece settles before a failure is reported: a write still queued must not outlive the
      // caller's use of the fd (blob-fill closes it, and the number may be reused).
      const results = await Promise.allSettled(pieces(chunks, WRITE_PIECE).map(({ buffers, size, offset }) => writeFully(fd, buffers, size, position + offset)));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
    digest: () => hash.digest('hex'),
  };
}

export interface Piece {
  buffers: Buffer[];
  size: number;
  /** Offset of the piece's first byte within the chunks. */
  offset: number;
}

/** `chunks` cut into runs of at most `max` bytes (views, no copies), in order. */
export function pieces(chunks: Buffer[], max: number): Piece[] {
  const out: Piece[] = [];
  let current: Piece = { buffers: [], size: 0, offset: 0 };
  for (let chunk of chunks) {
    while (chunk.length > 0) {
      const part = chunk.subarray(0, max - current.size);
      current.buffers.push(part);
      current.size += part.length;
      chunk = chunk.subarray(part.length);
      if (current.size === max) {
        out.push(current);
        current = { buffers: [], size: 0, offset: current.offset + max };
      }
    }
  }
  if (current.size > 0) out.push(current);
  return out;
}

/** One writev of `buffers` (`size` bytes) at `position`, going on after a short write. */
async function writeFully(fd: number, buffers: Buffer[], size: number, position: number): Promise<void> {
  let done = 0;
  let rest = buffers;
  while (done < size) {
    const n = await new Promise<number>((resolve, reject) => fs.writev(fd, rest, position + done, (e, written) => (e ? reject(e) : resolve(written))));
    done += n;
    if (done < size) rest = remainder(rest, n);
  }
}

/** `buffers` without their first `n` bytes. */
function remainder(buffers: Buffer[], n: number): Buffer[] {
  let skip = n;
  let i = 0;
  while (skip >= buffers[i]!.length) skip -= buffers[i++]!.length;
  return [buffers[i]!.subarray(skip), ...buffers.slice(i + 1)];
}
