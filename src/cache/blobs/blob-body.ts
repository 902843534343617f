/**
 * @module cache/blobs/blob-body
 * The body of a blob response, kept as what it is — a range of a file (a committed blob, or a
 * fill's temp file) — until the moment it is written, so it can take the cheapest way out:
 *
 * - `writeTo(response)`: straight onto the client's socket. With the sendfile addon (Linux; by
 *   default for fills' followers only, see cache/sendfile) the kernel copies page cache → socket
 *   and no byte enters JavaScript; otherwise each response reads into two buffers of its own and
 *   reuses them as the socket takes each one (the write callback says the kernel has it), so a
 *   herd of clients allocates nothing per chunk and leaves no garbage for the collector to find
 *   late (which is what made a herd's RSS grow).
 *
 * A body is consumed once, by exactly one of `writeTo` or `discard`.
 */
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { sendFileRange, sendfileFor } from './sendfile.ts';

/** Where a body goes: a node:http ServerResponse (any Writable; `socket` enables sendfile). */
export type BodyTarget = Writable & { socket?: Socket | null; flushHeaders?: () => void };

/** What `writeTo` moved: `bytes` in all, `sendfile` of them copied by the kernel (unseen by the socket's counters). */
export interface Written {
  bytes: number;
  sendfile: number;
}

export interface BlobBody {
  /** Writes every byte to `out`; resolves once the kernel has them all. */
  writeTo(out: BodyTarget): Promise<Written>;
  /** Gives the body up unread. */
  discard(): void;
}

/**
 * Ranges up to this size take the buffered copy even where sendfile could: one read and one write
 * cost less than sendfile's set-up (two dups, an epoll registration, a round trip to flush the
 * head), and most blobs a pull asks for (configs, small layers) are this small.
 */
const SENDFILE_MIN = 64 << 10;

/**
 * Cached-blob responses copied through buffers at once before the next one goes by sendfile even
 * under OCIMIRROR_SENDFILE=fills: each holds two 1 MiB buffers, so a fan-out to hundreds of nodes
 * would otherwise grow memory with the clients (see cache/sendfile).
 */
export const BUFFERED_CACHED_MAX = 8;
let bufferedCached = 0;

/** Read buffers kept per size for the next response (the fallback path's only allocation). */
const BUFFERS_KEPT = 16;
const pool = new Map<number, Buffer[]>();

function takeBuffer(size: number): Buffer {
  return pool.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
}

/** Drops the pooled read buffers (the idle collector, util/idle-collector, then frees them). */
export function trimReadBuffers(): void {
  pool.clear();
}

function giveBuffer(buffer: Buffer): void {
  const free = pool.get(buffer.length) ?? [];
  if (free.length < BUFFERS_KEPT) free.push(buffer);
  pool.set(buffer.length, free);
}

function readAt(fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buffer, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Resolves once `out` has handed `chunk` to the kernel; rejects if `out` fails or closes first. */
export function writeChunk(out: BodyTarget, chunk: Buffer): Promise<void> {
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

/** Rejects when `out` closes; for waits that are not writes (a fill's next bytes). */
export function untilClosed(out: BodyTarget): { promise: Promise<never>; cancel: () => void } {
  let cancel = () => {};
  const promise = new Promise<never>((_, reject) => {
    if (out.destroyed) return reject(closedError());
    const onClose = () => reject(closedError());
    out.once('close', onClose);
    cancel = () => out.off('close', onClose);
  });
  promise.catch(() => {});
  return { promise, cancel };
}

/**
 * Copies bytes [start, end) of `fd` to `out`: sendfile when `kind` may use it (cache/sendfile's
 * `sendfileFor`), `out` sits on a TCP socket and the range is larger than {@link SENDFILE_MIN},
 * else double-buffered reads into pooled buffers. Resolves with the bytes sendfile moved (0 when
 * the buffered copy ran).
 */
export async function writeFileRange(fd: number, start: number, end: number, out: BodyTarget, chunk: number, kind: 'fill' | 'cached'): Promise<number> {
  if (start >= end) return 0;
  const socket = out.socket;
  if (socket && end - start > SENDFILE_MIN && sendfileFor(kind, kind === 'cached' && bufferedCached >= BUFFERED_CACHED_MAX)) {
    out.flushHeaders?.();
    const closed = new AbortController();
    const onClose = () => closed.abort();
    out.once('close', onClose);
    try {
      let position = start;
      while (position < end) position += await sendFileRange(socket, fd, position, end - position, closed.signal);
      return end - start;
    } catch (err) {
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
  if (counted) bufferedCached++;
  try {
    let position = start;
    for (let k: 0 | 1 = 0; position < end; k = k === 0 ? 1 : 0) {
      await writes[k]; // this buffer's previous chunk is in the kernel: it may be reused
      const buffer = (buffers[k] ??= takeBuffer(size));
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
    if (counted) bufferedCached--;
    // A buffer whose write never completed may still be referenced by the socket: never reuse it.
    if (!failed) for (const b of buffers) giveBuffer(b);
  }
}

/** A committed blob file, bytes [start, end] (inclusive). */
export class CommittedBody implements BlobBody {
  readonly #handle: FileHandle;
  readonly #start: number;
  readonly #end: number;
  readonly #chunk: number;
  readonly #onDone: () => void;
  #consumed = false;

  constructor(handle: FileHandle, start: number, end: number, chunk: number, onDone: () => void) {
    this.#handle = handle;
    this.#start = start;
    this.#end = end;
    this.#chunk = chunk;
    this.#onDone = onDone;
  }

  #consume(): void {
    if (this.#consumed) throw new Error('blob body already consumed');
    this.#consumed = true;
  }

  async writeTo(out: BodyTarget): Promise<Written> {
    this.#consume();
    try {
      const sendfile = await writeFileRange(this.#handle.fd, this.#start, this.#end + 1, out, this.#chunk, 'cached');
      return { bytes: this.#end + 1 - this.#start, sendfile };
    } finally {
      await this.#handle.close().catch(() => {});
      this.#onDone();
    }
  }

  discard(): void {
    if (this.#consumed) return;
    this.#consumed = true;
    void this.#handle.close().catch(() => {}).finally(this.#onDone);
  }
}
