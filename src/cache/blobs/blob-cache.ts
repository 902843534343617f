/**
 * @module cache/blobs/blob-cache
 * The local side of blob serving: committed blobs (SQLite row + file) and fills in flight,
 * with exactly one fill per digest however many clients ask at once (util/single-flight). A fill
 * owns its own abort controller and timeout; it is never tied to the client that started it.
 * What it hands out are readable ranges (cache/blobs/blob-body); the HTTP layer writes them.
 */
import fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Logger } from '../../util/logger.ts';
import type { Digest } from '../../registry/digest.ts';
import { SingleFlight } from '../../util/single-flight.ts';
import { CommittedBody } from './blob-body.ts';
import { BlobFill, type ResumeBody } from './blob-fill.ts';
import type { BlobStore } from './blob-store.ts';
import { nodeFillWriter, type FillWriter } from './fill-writer.ts';
import type { BlobRow, Metadata } from '../metadata/metadata.ts';
import { isDiskFullError } from '../metadata/disk-full-error.ts';

/** What a fill needs from the upstream: the announced size and the body to copy. */
export interface FillSource {
  size: number | undefined;
  mediaType: string | undefined;
  body: Readable;
  /** Hands a body chunk back to its read buffers once its bytes are on disk (a bulk body's slabs). */
  release?: ((chunk: Buffer) => void) | undefined;
  /** Where the bytes come from: the upstream (the default), the blob's owner replica, or the shared bucket. */
  origin?: 'upstream' | 'peer' | 'bucket' | undefined;
  /** Opens the rest of the blob from a byte offset when `body` breaks (cache/blobs/blob-fill); absent = the fill fails. */
  resume?: ResumeBody | undefined;
}

export interface FillRequest {
  digest: Digest;
  /** The repository the blob is fetched for, linked on commit. */
  link: { upstream: string; repo: string };
  source: string;
  timeoutMs: number;
  /** Opens the upstream response; called once per fill, with the fill's own signal. */
  open: (signal: AbortSignal) => Promise<FillSource>;
}

export interface OpenBlob {
  size: number;
  body: CommittedBody;
}

export interface BlobCacheOptions {
  /** A fresh hash-and-write for each fill (cache/blobs/fill-writer's createFillWriter); Node's by default. */
  fillWriter?: () => FillWriter;
  /**
   * Told of every fill once its source answered, with how it will end (true: committed): the shared
   * bucket's tier copies fills from the upstream into the bucket as they run (cache/bucket/bucket-tier).
   */
  onFillStarted?: (fill: BlobFill, source: FillSource, outcome: Promise<boolean>) => void;
}

export class BlobCache {
  readonly store: BlobStore;
  readonly metadata: Metadata;
  readonly #log: Logger;
  /** One fill per digest, held from the upstream's answer until the fill is over (or the disk filled up). */
  readonly #fills = new SingleFlight<BlobFill>();
  readonly #fillWriter: () => FillWriter;
  readonly #onFillStarted: BlobCacheOptions['onFillStarted'];
  /** Fills whose bytes are still being copied or committed, with the means to abort them. */
  readonly #running = new Set<{ controller: AbortController; done: Promise<boolean> }>();
  /** digest → committed-file readers open now; eviction never removes a blob being read. */
  readonly #readers = new Map<string, number>();

  /** Settles when a fill is over: true when its blob was committed. */
  readonly #outcome = new WeakMap<BlobFill, Promise<boolean>>();
  /**
   * Called when a fill hits a full disk (the owner triggers eviction), with the room the blob
   * needs: the upstream's Content-Length, else the bytes relayed.
   */
  onDiskFull: ((info: { digest: string; needed: number; error: Error }) => void) | undefined;
  /** Called when a fill ends, for metrics. */
  onFillDone: ((info: { upstream: string; origin: 'upstream' | 'peer' | 'bucket'; result: 'committed' | 'uncached' | 'failed'; seconds: number; bytes: number }) => void) | undefined;

  constructor(store: BlobStore, metadata: Metadata, log: Logger, opts: BlobCacheOptions = {}) {
    this.store = store;
    this.metadata = metadata;
    this.#log = log.child({ module: 'blob-cache' });
    this.#fillWriter = opts.fillWriter ?? nodeFillWriter;
    this.#onFillStarted = opts.onFillStarted;
  }

  lookup(digest: string): BlobRow | undefined {
    return this.metadata.getBlob(digest);
  }

  /**
   * Opens a committed blob for [start, end]. The file is opened before any header is sent so a
   * file removed behind our back becomes a miss (and its row is dropped), not a broken response.
   */
  async openCommitted(row: BlobRow, start?: number, end?: number): Promise<OpenBlob | undefined> {
    const hex = row.digest.slice('sha256:'.length);
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.store.paths.blobFile(hex), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.#log.warn({ digest: row.digest }, 'blob row without file: dropping the row and refetching');
      this.metadata.deleteBlob(row.digest);
      return undefined;
    }
    this.metadata.recordBlobHit(row.digest);
    this.#readers.set(row.digest, (this.#readers.get(row.digest) ?? 0) + 1);
    const done = () => {
      const n = (this.#readers.get(row.digest) ?? 1) - 1;
      if (n <= 0) this.#readers.delete(row.digest);
      else this.#readers.set(row.digest, n);
    };
    return { size: row.size, body: new CommittedBody(handle, start ?? 0, end ?? row.size - 1, done) };
  }

  /** Whether a blob is being read from disk or filled right now: such a blob must not be removed. */
  inUse(digest: string): boolean {
    return this.#readers.has(digest) || this.#fills.get(digest) !== undefined;
  }

  /**
   * Removes a committed blob (row, then file). A reader that already opened the file keeps
   * reading it (unlink does not affect an open descriptor); callers check {@link inUse} first.
   */
  async remove(digest: string): Promise<void> {
    this.metadata.deleteBlob(digest);
    await this.store.remove(digest.slice('sha256:'.length));
  }

  /** The fill in flight for `digest`, if any (resolves once upstream headers arrived). */
  inflight(digest: string): Promise<BlobFill> | undefined {
    return this.#fills.get(digest);
  }

  /** Starts a fill, or joins the one running for this digest. Resolves once upstream answered. */
  fill(req: FillRequest): Promise<BlobFill> {
    return this.#fills.hold(req.digest.value, (forget) => this.#start(req, forget));
  }

  /** `forget` ends this fill's claim on its digest: the next client for it starts a fill of its own. */
  async #start(req: FillRequest, forget: () => void): Promise<BlobFill> {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new Error(`fill of ${req.digest.value} exceeded fillTimeout (${req.timeoutMs} ms)`)),
      req.timeoutMs,
    );
    timer.unref();
    let source: FillSource;
    try {
      source = await req.open(controller.signal);
    } catch (err) {
      clearTimeout(timer);
      throw err;
    }
    const key = req.digest.value;
    let diskFull: Error | undefined;
    const fill: BlobFill = new BlobFill({
      digest: req.digest,
      expectedSize: source.size,
      tempPath: this.store.tempPath(req.digest.hex),
      source: req.source,
      writer: this.#fillWriter(),
      release: source.release,
      onDiskFull: (error) => {
        // Clients already attached keep streaming (relayed); new ones start their own fill.
        forget();
        diskFull = error;
        this.#log.error({ digest: key, err: error.message, upstream: req.source }, 'disk full: serving this blob uncached');
      },
    });
    const onAbort = () => {
      fill.fail(controller.signal.reason);
      source.body.destroy(controller.signal.reason as Error);
    };
    controller.signal.addEventListener('abort', onAbort, { once: true });
    const started = Date.now();
    const report = (result: 'committed' | 'uncached' | 'failed', bytes: number) =>
      this.onFillDone?.({ upstream: req.source, origin: source.origin ?? 'upstream', result, seconds: (Date.now() - started) / 1000, bytes });
    /** Settles true once the blob is committed, false when the fill ended without committing. */
    const resume: ResumeBody | undefined = source.resume
      ? (offset, cause) => {
          this.#log.warn({ digest: key, offset, err: cause.message, upstream: req.source }, 'fill source broke mid-blob: continuing from the upstream');
          return (source.resume as ResumeBody)(offset, cause);
        }
      : undefined;
    const done: Promise<boolean> = fill
      .run(source.body, resume)
      .then(async ({ size, committable }) => {
        if (!committable) {
          await fsp.rm(fill.tempPath, { force: true });
          this.#log.warn({ digest: key, size, upstream: req.source }, 'blob served to its clients uncached (disk full or failed sync); nothing committed');
          report('uncached', size);
          return false;
        }
        await this.store.commit(fill.tempPath, req.digest.hex);
        try {
          this.metadata.putBlob({ digest: req.digest.value, size, mediaType: source.mediaType ?? null }, req.link);
        } catch (err) {
          if (!isDiskFullError(err)) throw err;
          // The file is in place but SQLite could not record it: without a row it would only hold space.
          await this.store.remove(req.digest.hex);
          diskFull = err;
          this.#log.error({ digest: key, err: err.message, upstream: req.source }, 'disk full: the blob was served but could not be recorded; nothing committed');
          report('uncached', size);
          return false;
        }
        this.#log.info({ digest: req.digest.value, size, ms: Date.now() - started, upstream: req.source }, 'blob committed');
        report('committed', size);
        return true;
      })
      .catch((err: unknown) => {
        fill.fail(err);
        void fsp.rm(fill.tempPath, { force: true });
        this.#log.warn({ digest: req.digest.value, err: (err as Error).message, upstream: req.source }, 'blob fill failed; nothing committed');
        report('failed', fill.written);
        return false;
      })
      .finally(() => {
        clearTimeout(timer);
        controller.signal.removeEventListener('abort', onAbort);
        forget();
        this.#running.delete(entry);
        fill.retire();
        // Told only now that the temp file is gone: that freed the room the owner (eviction) needs
        // to record anything at all, since SQLite shares the full disk.
        if (diskFull) {
          const error = diskFull;
          void fill.closed.then(() => {
            try {
              this.onDiskFull?.({ digest: key, needed: fill.expectedSize ?? fill.written, error });
            } catch (err) {
              this.#log.error({ err: (err as Error).message }, 'disk full: could not start eviction');
            }
          });
        }
      });
    const entry = { controller, done };
    this.#running.add(entry);
    this.#outcome.set(fill, done);
    try {
      this.#onFillStarted?.(fill, source, done);
    } catch (err) {
      this.#log.error({ digest: key, err: (err as Error).message }, 'a fill observer failed; the fill goes on');
    }
    return fill;
  }

  /** Resolves once `fill` is over: true when the blob is now committed in the cache. */
  outcome(fill: BlobFill): Promise<boolean> {
    return this.#outcome.get(fill) ?? Promise.resolve(this.metadata.getBlob(fill.digest.value) !== undefined);
  }

  /** Fills still copying or committing. */
  get activeFills(): number {
    return this.#running.size;
  }

  /**
   * Shutdown: lets running fills finish and commit within `timeoutMs`, then aborts the rest
   * (their temp files are removed; nothing partial is committed). Resolves once all settled.
   */
  async settle(timeoutMs: number): Promise<{ aborted: number }> {
    const all = () => Promise.allSettled([...this.#running].map((e) => e.done));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all().then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (!timedOut) return { aborted: 0 };
    const aborted = this.#running.size;
    for (const e of this.#running) e.controller.abort(new Error('shutting down'));
    await all();
    return { aborted };
  }
}
