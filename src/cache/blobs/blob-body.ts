/**
 * @module cache/blobs/blob-body
 * What the cache hands out for a blob's bytes: a readable range of a file, kept as what it is
 * until the HTTP layer (http/body/blob-writer) writes it, so it can take the cheapest way out
 * (sendfile from the page cache, or reads into reused buffers). The cache never touches the
 * client's connection.
 *
 * - a committed blob: an open file, bytes [start, end], and `release()`;
 * - a fill's reader (cache/blobs/blob-fill): a temp file still growing, readable from an offset,
 *   that says how far bytes may be taken now, lets the caller wait for more, and fails with the
 *   fill's error.
 *
 * Whoever takes a body calls `release()` exactly when done with it, written or not (it is
 * idempotent).
 */
import type { FileHandle } from 'node:fs/promises';

/** A committed blob file, bytes [start, end] (inclusive). */
export class CommittedBody {
  readonly kind = 'committed';
  readonly #handle: FileHandle;
  readonly start: number;
  readonly end: number;
  readonly #onDone: () => void;
  #released: Promise<void> | undefined;

  constructor(handle: FileHandle, start: number, end: number, onDone: () => void) {
    this.#handle = handle;
    this.start = start;
    this.end = end;
    this.#onDone = onDone;
  }

  /** The open file, for positional reads and sendfile; valid until {@link release}. */
  get fd(): number {
    return this.#handle.fd;
  }

  /** Closes the file, then tells the cache the blob is no longer read; resolves once both happened. */
  release(): Promise<void> {
    this.#released ??= this.#handle.close().catch(() => {}).finally(this.#onDone);
    return this.#released;
  }
}

/**
 * What a fill's reader may take now (see {@link FillBody.window}):
 * - `failed`: the fill failed; the response must abort;
 * - `done`: the whole range was taken;
 * - `wait`: nothing new yet; wait for {@link FillBody.progress};
 * - `file`: bytes [position, limit) of the temp file open as `fd`; `more` when the fill will
 *   still add bytes to this range (a writer may wait to send them in larger batches);
 * - `queue`: the disk is full and the bytes come from {@link FillBody.takeQueued}, up to `limit`.
 */
export type FillWindow =
  | { kind: 'failed'; error: Error | undefined }
  | { kind: 'done' }
  | { kind: 'wait' }
  | { kind: 'queue'; limit: number }
  | { kind: 'file'; fd: number; limit: number; more: boolean };

/** A reader following a fill in progress, bytes [start, end] of the blob. */
export interface FillBody {
  readonly kind: 'fill';
  /** The next byte to take. */
  readonly position: number;
  /** What may be taken now. The final byte of the range is held back until the fill is verified. */
  window(): FillWindow;
  /** The caller sent the file's bytes up to `to` (exclusive), at most the `limit` of a `file` window. */
  advance(to: number): void;
  /** The next relayed bytes up to `limit` (a `queue` window), counted as taken; undefined when none yet. */
  takeQueued(limit: number): Buffer | undefined;
  /** Resolves at the fill's next progress, verification or failure. */
  progress(): Promise<void>;
  /** Detaches from the fill (a relaying fill stops waiting for this reader). */
  release(): void;
}

/** A blob's bytes as the cache hands them out; the HTTP layer writes them. */
export type BlobBody = CommittedBody | FillBody;
