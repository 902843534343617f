/**
 * @module http/body/blob-writer
 * Writes a blob body the cache handed out (cache/blobs/blob-body: a committed file range, or a
 * reader following a fill) straight onto the client's socket, the cheapest way it can: with the
 * sendfile addon (Linux; by default for fills' followers only, see http/body/sendfile) the kernel
 * copies page cache → socket and no byte enters JavaScript; otherwise each response reads into two
 * buffers of its own (http/body/read-buffers) and reuses them as the socket takes each one (the write
 * callback says the kernel has it).
 *
 * One writer serves the whole server: it owns the read-buffer pool and the count of cached blobs
 * being copied through buffers. The composition root creates it from server.sendfile and
 * server.nativeAddon.
 */
import fs from 'node:fs';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import type { BlobBody, CommittedBody, FillBody } from '../../cache/blobs/blob-body.ts';
import { ReadBuffers } from './read-buffers.ts';
import { sendFileRange, type SendfilePolicy } from './sendfile.ts';

/** Where a body goes: a node:http ServerResponse (any Writable; `socket` enables sendfile). */
export type BodyTarget = Writable & { socket?: Socket | null; flushHeaders?: () => void };

/** What one write moved: `bytes` in all, `sendfile` of them copied by the kernel (unseen by the socket's counters). */
export interface Written {
  bytes: number;
  sendfile: number;
}

/** 1 MiB reads of a committed blob roughly double file-serving throughput over the 64 KiB default. */
export const READ_CHUNK = 1 << 20;

/**
 * Buffer size of a reader following a fill when it copies through buffers (no sendfile). Smaller
 * than a committed read's 1 MiB: a herd of clients each holds two of these, and a fill's bytes
 * arrive no faster than the upstream sends them anyway.
 */
export const FILL_READ_CHUNK = 256 << 10;

/**
 * Bytes a reader behind a running fill lets gather before it sends again: each send costs a few
 * syscalls and callbacks, and a herd of readers woken for every 64 KiB upstream chunk spent more
 * on that than on the bytes. The first send goes out at once (time to first byte).
 */
export const FILL_BATCH = 512 << 10;

/**
 * Ranges up to this size take the buffered copy even where sendfile could: one read and one write
 * cost less than sendfile's set-up (two dups, an epoll registration, a round trip to flush the
 * head), and most blobs a pull asks for (configs, small layers) are this small.
 */
export const SENDFILE_MIN = 64 << 10;

/**
 * Cached-blob responses copied through buffers at once before the next one goes by sendfile even
 * under server.sendfile 'fills': each holds two 1 MiB buffers, so a fan-out to hundreds of nodes
 * would otherwise grow memory with the clients (see http/body/sendfile).
 */
export const BUFFERED_CACHED_MAX = 8;

export interface BlobWriterOptions {
  sendfile: SendfilePolicy;
  /** Read size for committed blobs copied through buffers; {@link READ_CHUNK} by default. */
  readChunk?: number;
  /** Read size for fills' followers copied through buffers; {@link FILL_READ_CHUNK} by default. */
  fillReadChunk?: number;
}

export class BlobWriter {
  readonly sendfile: SendfilePolicy;
  readonly #buffers = new ReadBuffers();
  readonly #readChunk: number;
  readonly #fillReadChunk: number;
  #bufferedCached = 0;
  #sendfileBytes = 0;

  constructor(opts: BlobWriterOptions) {
    this.sendfile = opts.sendfile;
    this.#readChunk = opts.readChunk ?? READ_CHUNK;
    this.#fillReadChunk = opts.fillReadChunk ?? FILL_READ_CHUNK;
  }

  /**
   * Writes every byte of `body` to `out` and releases the body, written or not; resolves once the
   * kernel has them all. Rejects when the client goes away, or with the fill's error when the fill
   * fails: the caller then destroys the response (a wrong body must end in an abort).
   */
  write(body: BlobBody, out: BodyTarget, onSendfile?: (bytes: number) => void): Promise<Written> {
    return body.kind === 'committed' ? this.#writeCommitted(body, out, onSendfile) : this.#writeFill(body, out, onSendfile);
  }

  /** Drops the pooled read buffers (the idle collector, util/idle-collector, then frees them). */
  trim(): void {
    this.#buffers.trim();
  }

  /** Body bytes sendfile has moved since start (0 when the native addon or sendfile is off). */
  get sendfileBytes(): number {
    return this.#sendfileBytes;
  }

  /** Read buffers pooled now (for tests). */
  get pooledBuffers(): number {
    return this.#buffers.kept;
  }

  async #writeCommitted(body: CommittedBody, out: BodyTarget, onSendfile: ((bytes: number) => void) | undefined): Promise<Written> {
    try {
      const sendfile = await this.#writeFileRange(body.fd, body.start, body.end + 1, out, this.#readChunk, 'cached', onSendfile);
      return { bytes: body.end + 1 - body.start, sendfile };
    } finally {
      await body.release();
    }
  }

  /**
   * Writes the reader's range as the fill makes bytes available, under the rules of its window
   * (the final byte only once the fill is verified); batches a running fill's bytes by
   * {@link FILL_BATCH}.
   */
  async #writeFill(reader: FillBody, out: BodyTarget, onSendfile: ((bytes: number) => void) | undefined): Promise<Written> {
    const from = reader.position;
    let sendfile = 0;
    // The status and size are settled once the upstream answered: tell the client now rather than
    // with the first body bytes (clients time out on a response head that is slow to come).
    out.flushHeaders?.();
    try {
      for (;;) {
        const w = reader.window();
        if (w.kind === 'failed') throw w.error;
        if (w.kind === 'done') return { bytes: reader.position - from, sendfile };
        if (w.kind === 'queue') {
          const part = reader.takeQueued(w.limit);
          if (part) await writeChunk(out, part);
          else await progress(reader, out);
        } else if (w.kind === 'wait' || (w.more && reader.position > from && w.limit - reader.position < FILL_BATCH)) {
          await progress(reader, out);
        } else {
          sendfile += await this.#writeFileRange(w.fd, reader.position, w.limit, out, this.#fillReadChunk, 'fill', onSendfile);
          reader.advance(w.limit);
        }
      }
    } finally {
      reader.release();
    }
  }

  /**
   * Copies bytes [start, end) of `fd` to `out`: sendfile when the policy allows it for `kind`,
   * `out` sits on a TCP socket and the range is larger than {@link SENDFILE_MIN}, else
   * double-buffered reads into pooled buffers. Resolves with the bytes sendfile moved (0 when the
   * buffered copy ran).
   */
  async #writeFileRange(fd: number, start: number, end: number, out: BodyTarget, chunk: number, kind: 'fill' | 'cached', onSendfile?: (bytes: number) => void): Promise<number> {
    if (start >= end) return 0;
    const socket = out.socket;
    const addon = this.sendfile.addon;
    if (socket && addon && end - start > SENDFILE_MIN && this.sendfile.allows(kind, kind === 'cached' && this.#bufferedCached >= BUFFERED_CACHED_MAX)) {
      out.flushHeaders?.();
      const closed = new AbortController();
      const onClose = () => closed.abort();
      out.once('close', onClose);
      try {
        let position = start;
        while (position < end) {
          const sent = await sendFileRange(addon, socket, fd, position, end - position, closed.signal);
          position += sent;
          // Counted as they go, so a response cut mid-way still reports what reached the client.
          this.#sendfileBytes += sent;
          onSendfile?.(sent);
        }
        return end - start;
      } catch (err) {
        // A cut response: what sendfile moved before the client went away was on the wire all the same.
        const sent = (err as { bytesSent?: number }).bytesSent ?? 0;
        if (sent > 0) {
          this.#sendfileBytes += sent;
          onSendfile?.(sent);
        }
        // Not a socket sendfile can use (no fd): the buffered copy below serves it.
        if ((err as NodeJS.ErrnoException).code !== 'ENOTSOCK') throw err;
      } finally {
        out.off('close', onClose);
      }
    }
    // A small range needs one small buffer; a large one two of `chunk`, the second taken on first use.
    const size = end - start <= SENDFILE_MIN ? SENDFILE_MIN : chunk;
    const buffers: Buffer[] = [];
    const writes: [Promise<void> | undefined, Promise<void> | undefined] = [undefined, undefined];
    let failed = false;
    const counted = kind === 'cached' && size > SENDFILE_MIN;
    if (counted) this.#bufferedCached++;
    try {
      let position = start;
      for (let k: 0 | 1 = 0; position < end; k = k === 0 ? 1 : 0) {
        await writes[k]; // this buffer's previous chunk is in the kernel: it may be reused
        const buffer = (buffers[k] ??= this.#buffers.take(size));
        const n = await readAt(fd, buffer, Math.min(size, end - position), position);
        if (n === 0) throw Object.assign(new Error(`file ended at ${position}, before ${end}`), { code: 'ESHORT' });
        const write = writeChunk(out, n === buffer.length ? buffer : buffer.subarray(0, n));
        write.catch(() => {}); // awaited on the next use of this buffer or below
        writes[k] = write;
        position += n;
      }
      await Promise.all(writes);
      return 0;
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      if (counted) this.#bufferedCached--;
      // A buffer whose write never completed may still be referenced by the socket: never reuse it.
      if (!failed) for (const b of buffers) this.#buffers.give(b);
    }
  }
}

function readAt(fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buffer, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Resolves once `out` has handed `chunk` to the kernel; rejects if `out` fails or closes first. */
function writeChunk(out: BodyTarget, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (out.destroyed) {
      reject(closedError());
      return;
    }
    const onClose = () => reject(closedError());
    out.once('close', onClose);
    out.write(chunk, (err) => {
      out.off('close', onClose);
      if (err) reject(err);
      else resolve();
    });
  });
}

function closedError(): Error {
  return Object.assign(new Error('the client connection closed'), { code: 'ECONNRESET' });
}

/** Waits for the fill's next progress; rejects if the client goes away first. */
async function progress(reader: FillBody, out: BodyTarget): Promise<void> {
  if (out.destroyed) throw closedError();
  let onClose: (() => void) | undefined;
  const closed = new Promise<never>((_, reject) => {
    onClose = () => reject(closedError());
    out.once('close', onClose);
  });
  closed.catch(() => {}); // a close right after the progress won settles nobody's wait
  try {
    await Promise.race([reader.progress(), closed]);
  } finally {
    out.off('close', onClose!);
  }
}
