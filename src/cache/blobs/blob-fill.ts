/**
 * @module cache/blobs/blob-fill
 * One upstream download of one blob, shared by every client that wants it while it runs.
 *
 * The fill appends upstream bytes to a temp file, hashing as it goes; readers tail that file
 * from any offset, so a client joining late (or asking for a Range) gets bytes as soon as they
 * exist on disk, a slow client never slows the fill, and memory stays flat however large the
 * blob. The final byte is released to readers only once the sha256 and size are verified: a
 * client must never see a clean end to a wrong body. On any failure every reader fails with the
 * fill's error (the HTTP layer aborts its connection), the temp file is removed and nothing is
 * committed. Readers are ranges the HTTP layer writes (cache/blobs/blob-body's FillBody).
 * (distribution's proxyblobstore streams to one client while copying to storage; here every
 * waiting client streams.)
 *
 * A source that can continue (FillSource.resume: a stream from the blob's owner replica, which may
 * die mid-way) does not fail the clients either when its body breaks: the fill goes on from the byte
 * it got to with the body `resume` opens (the upstream, asked for the rest with Range), hashing on
 * as if nothing happened, so the clients' streams continue and the digest check covers every byte.
 *
 * A full disk (ENOSPC/EDQUOT) does not fail the clients: the fill switches to relaying, handing
 * further upstream bytes to each attached reader through a small bounded in-memory queue (the
 * upstream is paused while any reader's queue is full), still verifying the digest, and commits
 * nothing. Its owner is told, so it can trigger eviction and stop new clients joining.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { RegistryError } from '../../registry/errors.ts';
import type { Digest } from '../../registry/digest.ts';
import type { FillBody, FillWindow } from './blob-body.ts';
import { nodeFillWriter, type FillWriter } from './fill-writer.ts';

export type FillState = 'running' | 'verified' | 'failed';

/** Downloaded bytes that may wait for their temp-file write before the upstream is paused. */
const WRITE_AHEAD = 4 << 20;

/** Times one fill may continue after its body broke, before it fails like any other. */
const MAX_RESUMES = 3;

/** Opens the rest of the blob from byte `offset` after the body broke (FillSource.resume). */
export type ResumeBody = (offset: number, cause: Error) => Promise<Readable>;

/** Bytes a relaying fill may queue for one reader before it pauses the upstream. */
const RELAY_QUEUE_MAX = 8 << 20;

const DISK_FULL = new Set(['ENOSPC', 'EDQUOT']);

export interface FillResult {
  size: number;
  /** False when the disk filled up: the clients were served, the temp file must not be committed. */
  committable: boolean;
}

export interface BlobFillOptions {
  digest: Digest;
  /** Size the upstream announced (Content-Length); undefined when it did not. */
  expectedSize: number | undefined;
  tempPath: string;
  /** Label for error messages, e.g. the upstream's name. */
  source: string;
  /** Called once when the disk fills up and the fill starts relaying. */
  onDiskFull?: (err: Error) => void;
  /** Hashes and writes the batches (cache/blobs/fill-writer); Node's own when not given. */
  writer?: FillWriter;
  /** Gives a chunk back to the body's read buffers once it is on disk (FillSource.release). */
  release?: ((chunk: Buffer) => void) | undefined;
}

export class BlobFill {
  readonly digest: Digest;
  readonly expectedSize: number | undefined;
  readonly tempPath: string;
  readonly source: string;
  #written = 0;
  #state: FillState = 'running';
  #error: Error | undefined;
  #fd: number | undefined;
  #openReaders = 0;
  #retired = false;
  #listeners = new Set<() => void>();
  /** Bytes safely in the temp file once relaying began; undefined while everything goes to disk. */
  #fileBytes: number | undefined;
  readonly #readers = new Set<FillReader>();
  #drainWaiters = new Set<() => void>();
  readonly #onDiskFull: ((err: Error) => void) | undefined;
  readonly #writer: FillWriter;
  #release: ((chunk: Buffer) => void) | undefined;
  /** The batch being hashed and written: a failed fill waits for it before its fd may close. */
  #storing: Promise<void> | undefined;

  constructor({ digest, expectedSize, tempPath, source, onDiskFull, writer, release }: BlobFillOptions) {
    this.digest = digest;
    this.expectedSize = expectedSize;
    this.tempPath = tempPath;
    this.source = source;
    this.#onDiskFull = onDiskFull;
    this.#writer = writer ?? nodeFillWriter();
    this.#release = release;
  }

  /** Bytes readable from the temp file when relaying; undefined when all bytes are on disk. */
  get fileBytes(): number | undefined {
    return this.#fileBytes;
  }

  get state(): FillState {
    return this.#state;
  }

  get written(): number {
    return this.#written;
  }

  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * Copies `body` into the temp file and verifies it. Resolves with the size once the digest
   * checked out (the caller then commits the file); rejects, after cleaning up, otherwise.
   */
  async run(body: Readable, resume?: ResumeBody): Promise<FillResult> {
    try {
      try {
        this.#fd = fs.openSync(this.tempPath, 'wx+', 0o644);
      } catch (err) {
        if (!DISK_FULL.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
        this.#startRelay(err as Error);
      }
      const received = await this.#copy(body, resume);
      const hex = this.#writer.digest();
      if (this.expectedSize !== undefined && received !== this.expectedSize) {
        throw new RegistryError('BAD_GATEWAY', { message: `upstream ${this.source} ended ${this.digest.value} after ${received} of ${this.expectedSize} bytes` });
      }
      if (hex !== this.digest.hex) {
        throw new RegistryError('BAD_GATEWAY', { message: `upstream ${this.source} sent content whose sha256 does not match ${this.digest.value}`,
          detail: { expected: this.digest.value, actual: `sha256:${hex}` },
        });
      }
      // The bytes are right: release the last byte to the clients now, not after the fsync below
      // (durability is the cache's concern; correctness of what a client receives is settled).
      this.#state = 'verified';
      this.#notify();
      let committable = this.#fileBytes === undefined;
      if (committable) {
        // Durable before it becomes visible under its final name (see BlobStore.commit). A failed
        // sync makes the file uncommittable; the clients' bytes were right all the same.
        committable = await new Promise<boolean>((resolve) => fs.fdatasync(this.#fd as number, (e) => resolve(!e)));
      }
      return { size: this.#written, committable };
    } catch (err) {
      this.fail(err);
      // A write still running must not outlive the fd (closed, its number reused) or the file.
      await this.#storing?.catch(() => {});
      await fsp.rm(this.tempPath, { force: true });
      throw this.#error;
    }
  }

  /**
   * Stores `body` as it arrives, resolving with its size: one batch at a time, each taking every
   * chunk that arrived while the previous one was hashed and written (one threadpool round trip
   * and one reader wake-up per batch rather than per 64 KiB socket read). Flowing 'data' events,
   * not `for await`: the async iterator concatenates buffered chunks into a fresh copy on every
   * read. The upstream is paused while more than WRITE_AHEAD bytes wait for the disk.
   */
  #copy(body: Readable, resume: ResumeBody | undefined): Promise<number> {
    let received = 0;
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let writing = false;
    let ended = false;
    let resumes = 0;
    let current = body;
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (err: unknown) => {
        if (settled) return;
        settled = true;
        detach(current);
        if (err === undefined) resolve(received);
        else {
          current.destroy();
          reject(err);
        }
      };
      const flush = () => {
        if (writing || settled) return;
        if (batch.length === 0) {
          if (ended) finish(undefined);
          return;
        }
        const chunks = batch;
        const bytes = batchBytes;
        batch = [];
        batchBytes = 0;
        writing = true;
        this.#storing = this.#store(chunks, bytes);
        this.#storing.then(() => {
          writing = false;
          if (current.isPaused() && !ended) current.resume();
          flush();
        }, finish);
      };
      const onData = (chunk: Buffer) => {
        if (this.#state === 'failed') return finish(this.#error);
        received += chunk.length;
        if (this.expectedSize !== undefined && received > this.expectedSize) {
          return finish(new RegistryError('BAD_GATEWAY', { message: `upstream ${this.source} sent more than the announced ${this.expectedSize} bytes for ${this.digest.value}` }));
        }
        batch.push(chunk);
        batchBytes += chunk.length;
        if (batchBytes > WRITE_AHEAD) current.pause();
        flush();
      };
      const onEnd = () => {
        ended = true;
        flush();
      };
      /** The body broke: continue from `received` where the source can, else fail. */
      const onBroken = (err: Error) => {
        if (settled) return;
        const more = this.expectedSize === undefined || received < this.expectedSize;
        if (!resume || this.#state === 'failed' || !more || resumes >= MAX_RESUMES) return finish(err);
        resumes++;
        detach(current);
        current.destroy();
        // Chunks of the next body belong to no read-buffer pool of the first.
        this.#release = undefined;
        resume(received, err).then(
          (next) => {
            if (settled) return void next.destroy();
            attach(next);
          },
          (resumeErr: unknown) => finish(resumeErr),
        );
      };
      // A body destroyed without an error (e.g. the fill aborted, a peer gone) ends here rather than hanging.
      const onClose = () => {
        if (!ended) onBroken(this.#error ?? new Error(`upstream ${this.source} closed the body of ${this.digest.value} early`));
      };
      function attach(b: Readable) {
        current = b;
        b.on('data', onData);
        b.once('end', onEnd);
        b.once('error', onBroken);
        b.once('close', onClose);
      }
      function detach(b: Readable) {
        b.off('data', onData);
        b.off('end', onEnd);
        b.off('error', onBroken);
        b.off('close', onClose);
      }
      attach(body);
    });
  }

  /**
   * Hashes chunks and appends them to the temp file (or, once the disk is full, relays them), and
   * tells the readers.
   */
  async #store(chunks: Buffer[], bytes: number): Promise<void> {
    if (this.#state === 'failed') throw this.#error;
    if (this.#fileBytes === undefined) {
      try {
        await this.#writer.write(chunks, this.#fd as number, this.#written);
        // On disk: a bulk body's read slabs may take new bytes (util/read-slabs). Relayed chunks
        // below are never released: readers' queues hold them.
        if (this.#release) for (const chunk of chunks) this.#release(chunk);
        this.#written += bytes;
        this.#notify();
        return;
      } catch (err) {
        if (!DISK_FULL.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
        // Part of the batch may be on disk; relaying restarts from what `#written` counts. The
        // writer hashed the whole batch before writing.
        this.#startRelay(err as Error);
      }
    } else {
      await this.#writer.write(chunks, undefined, 0);
    }
    for (const chunk of chunks) await this.#relay(chunk, this.#written);
  }

  #startRelay(err: Error): void {
    this.#fileBytes = this.#written;
    try {
      this.#onDiskFull?.(err);
    } catch {
      /* the owner's bookkeeping must not fail the clients */
    }
  }

  /** Hands a chunk to every attached reader, then pauses (by not returning) while one is full. */
  async #relay(chunk: Buffer, offset: number): Promise<void> {
    for (const reader of this.#readers) reader.enqueue(chunk, offset);
    this.#written = offset + chunk.length;
    this.#notify();
    while (this.#state === 'running' && [...this.#readers].some((r) => r.queuedBytes > RELAY_QUEUE_MAX)) {
      await new Promise<void>((resolve) => this.#drainWaiters.add(resolve));
    }
  }

  /** A reader consumed queued bytes or went away: a paused relay may go on. */
  readerDrained(): void {
    const waiters = [...this.#drainWaiters];
    this.#drainWaiters.clear();
    for (const w of waiters) w();
  }

  /** Aborts the fill (e.g. on timeout) and every reader; idempotent. */
  fail(err: unknown): void {
    if (this.#state === 'failed') return;
    this.#state = 'failed';
    this.#error =
      err instanceof RegistryError
        ? err
        : new RegistryError('BAD_GATEWAY', { message: `fetching ${this.digest.value} from upstream ${this.source} failed: ${(err as Error)?.message ?? err}`, cause: err });
    this.#notify();
    this.readerDrained();
  }

  /**
   * A reader of bytes [start, end] (inclusive; end defaults to the last byte), following the
   * fill. Its window turns 'failed' if the fill fails before the range was taken.
   */
  createReader(start = 0, end?: number): FillBody {
    if (this.#state === 'failed') throw this.#error;
    if (this.#fileBytes !== undefined && this.#written > this.#fileBytes) {
      // Relayed bytes are gone from memory once their readers took them: this client cannot join.
      throw new RegistryError('UNAVAILABLE', { message: `the disk is full and ${this.digest.value} is being relayed uncached; retry` });
    }
    this.#openReaders++;
    let released = false;
    const reader: FillReader = new FillReader(this, start, end, () => {
      if (released) return;
      released = true;
      this.#openReaders--;
      this.#readers.delete(reader);
      this.readerDrained();
      this.#maybeClose();
    });
    this.#readers.add(reader);
    return reader;
  }

  /** Calls `listener` once, at the next progress, verification or failure. */
  onProgress(listener: () => void): void {
    this.#listeners.add(listener);
  }

  /** The open temp file, for readers' positional reads. */
  get fd(): number | undefined {
    return this.#fd;
  }

  /** The owner is done with the fill (committed or failed); the fd closes after the last reader. */
  retire(): void {
    this.#retired = true;
    this.#maybeClose();
  }

  #notify(): void {
    if (this.#listeners.size === 0) return;
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    for (const listener of listeners) listener();
  }

  /** The fd stays open while the owner or any reader needs it; rename and unlink don't affect it. */
  #maybeClose(): void {
    if (!this.#retired || this.#openReaders !== 0) return;
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd === undefined) this.#resolveClosed();
    else fs.close(fd, () => this.#resolveClosed());
  }

  #resolveClosed: () => void = () => {};
  /** Resolves once the temp file's descriptor is closed: only then does an unlinked temp file free its space. */
  readonly closed: Promise<void> = new Promise((resolve) => (this.#resolveClosed = resolve));
}

/** Tails a fill's temp file from `position`, through bytes the fill has not written yet. */
class FillReader implements FillBody {
  readonly kind = 'fill';
  readonly #fill: BlobFill;
  readonly #end: number | undefined;
  readonly #release: () => void;
  #position: number;
  /** Relayed chunks not yet taken, in offset order (only after the disk filled up). */
  readonly #queue: Array<{ offset: number; chunk: Buffer }> = [];
  #queued = 0;

  constructor(fill: BlobFill, start: number, end: number | undefined, release: () => void) {
    this.#fill = fill;
    this.#position = start;
    this.#end = end;
    this.#release = release;
  }

  get position(): number {
    return this.#position;
  }

  get queuedBytes(): number {
    return this.#queued;
  }

  enqueue(chunk: Buffer, offset: number): void {
    const last = this.#end ?? Infinity;
    if (offset + chunk.length <= this.#position || offset > last) return; // not in this reader's range
    this.#queue.push({ offset, chunk });
    this.#queued += chunk.length;
  }

  release(): void {
    this.#release();
  }

  /**
   * What this reader may take now. Until the fill is verified the final byte of the range is held
   * back (and the fill's newest byte, for a range that runs to the end): a wrong body must end in
   * an abort, never cleanly, whichever part of it a client asked for. Once the disk filled up
   * (relaying), bytes past what reached the file come from the in-memory queue.
   */
  window(): FillWindow {
    const fill = this.#fill;
    if (fill.state === 'failed') return { kind: 'failed', error: fill.error };
    const verified = fill.state === 'verified';
    const last = this.#end ?? (verified ? fill.written - 1 : undefined);
    if (last !== undefined && this.#position > last) return { kind: 'done' };
    let limit = verified ? Math.min(fill.written, (last as number) + 1) : Math.min(fill.written - 1, this.#end ?? Infinity);
    const fileBytes = fill.fileBytes;
    if (fileBytes !== undefined && this.#position >= fileBytes) return { kind: 'queue', limit };
    if (fileBytes !== undefined) limit = Math.min(limit, fileBytes);
    if (this.#position >= limit || fill.fd === undefined) return { kind: 'wait' };
    // More bytes of this range are still to come from the fill (a reader may wait to batch them).
    const more = !verified && (fileBytes === undefined || limit < fileBytes);
    return { kind: 'file', fd: fill.fd, limit, more };
  }

  advance(to: number): void {
    if (to < this.#position) throw new Error(`a fill reader cannot go back from ${this.#position} to ${to}`);
    this.#position = to;
  }

  progress(): Promise<void> {
    return new Promise<void>((resolve) => this.#fill.onProgress(resolve));
  }

  /**
   * The next relayed bytes (disk full) up to `limit`, taken off the queue and counted as taken;
   * undefined when none are releasable yet.
   */
  takeQueued(limit: number): Buffer | undefined {
    while (this.#queue.length > 0 && this.#queue[0]!.offset + this.#queue[0]!.chunk.length <= this.#position) {
      this.#queued -= this.#queue.shift()!.chunk.length;
    }
    const head = this.#queue[0];
    if (!head || this.#position >= limit) return undefined;
    const to = Math.min(head.chunk.length, limit - head.offset);
    const part = head.chunk.subarray(this.#position - head.offset, to);
    this.#position += part.length;
    if (to === head.chunk.length) {
      this.#queue.shift();
      this.#queued -= head.chunk.length;
      this.#fill.readerDrained();
    }
    return part;
  }
}
