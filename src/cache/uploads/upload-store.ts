/**
 * @module cache/uploads/upload-store
 * Blob upload sessions of the distribution-spec push API (POST, PATCH, PUT, GET, DELETE on
 * `/v2/<name>/blobs/uploads/<id>`), kept on disk under `<data>/uploads/<id>/` (cache/paths) so
 * they survive a restart and can be resumed.
 *
 * - Chunks are accepted in order only (spec: out of order is 416, RANGE_INVALID) and one request
 *   at a time per session; a chunk is all or nothing (cache/uploads/upload-append).
 * - While the process lives, a running sha256 covers exactly the acknowledged bytes, so closing an
 *   upload costs no re-read; a session reopened after a restart is hashed from disk once, at close.
 * - Closing verifies the digest (sha256 only: registry/digest) and moves the data file into the
 *   blob store as a committed blob (cache/uploads/upload-commit). A digest that does not match
 *   removes the session: the spec counts a 4xx other than 416 as a failed upload, and
 *   distribution discards the data the same way, so the client starts over.
 * - A full disk answers UNAVAILABLE (503, which clients retry) and leaves the session at its last
 *   acknowledged size; the owner is told so it can make room, as for fills.
 * Linking the blob to the hosted repository is the caller's, through the commit hook.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { parseDigest, type Digest } from '../../registry/digest.ts';
import { RegistryError } from '../../registry/errors.ts';
import type { Logger } from '../../util/logger.ts';
import type { BlobStore } from '../blobs/blob-store.ts';
import { isDiskFullError } from '../metadata/disk-full-error.ts';
import { createFillWriter, type FillWriter } from '../blobs/fill-writer.ts';
import type { NativeAddon } from '../../util/native-addon.ts';
import type { Metadata } from '../metadata/metadata.ts';
import type { DataPaths } from '../paths.ts';
import { appendBody } from './upload-append.ts';
import { commitUpload, type CommitHook } from './upload-commit.ts';
import { isUploadId, newUploadId } from './upload-id.ts';
import { uploadRange, type ChunkRange } from '../../registry/upload-range.ts';
import { readSession, writeSession, type UploadSession } from './upload-session.ts';

export type { UploadSession } from './upload-session.ts';
export type { CommitHook } from './upload-commit.ts';

export interface UploadStoreOptions {
  paths: DataPaths;
  /** The blob store committed uploads enter, and its metadata. */
  store: BlobStore;
  metadata: Metadata;
  log: Logger;
  /** Epoch ms; tests move it. */
  now?: () => number;
  /** Hash-and-write through the native addon (server.nativeAddon), as fills do; Node's crypto without it. */
  nativeAddon?: NativeAddon | undefined;
  /** The most one request body (a chunk, or a whole monolithic blob) may hold; unlimited when unset. */
  maxChunk?: number;
  /** A write found the disk full (`needed`: the bytes it was writing), so the owner can make room. */
  onDiskFull?: (info: { what: string; needed: number; error: Error }) => void;
  /** A blob was committed from an upload (or was already stored), for eviction checks and metrics. */
  onCommitted?: (info: { digest: string; size: number; existed: boolean }) => void;
}

export interface AppendOptions {
  /** The request's Content-Range, parsed (cache/uploads/upload-range). */
  range?: ChunkRange | undefined;
  /** The request's Content-Length. */
  contentLength?: number | undefined;
}

export interface FinishOptions extends AppendOptions {
  /** Runs in the transaction that records the blob: the hosted layer links it here. */
  onCommit?: CommitHook | undefined;
}

export interface FinishedUpload {
  digest: string;
  size: number;
  /** The blob was already stored; the upload's copy was dropped. */
  existed: boolean;
}

export interface OpenReport {
  sessions: number;
  /** Session directories without a readable record or data file, and stray entries. */
  removed: number;
}

interface Live {
  session: UploadSession;
  /**
   * Hashes and writes the session's bytes; its sha256 covers exactly the acknowledged bytes. Dropped
   * (closing re-hashes the file) after a restart, a failed append, or a digest taken for a commit.
   */
  writer: FillWriter | undefined;
  /** A request is writing (or the session is being created): everything else is refused. */
  busy: boolean;
}

export class UploadStore {
  readonly #paths: DataPaths;
  readonly #store: BlobStore;
  readonly #metadata: Metadata;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #maxChunk: number | undefined;
  readonly #addon: NativeAddon | undefined;
  /** Settable after construction, like BlobCache's: the owner of eviction is wired up later. */
  onDiskFull: UploadStoreOptions['onDiskFull'];
  onCommitted: UploadStoreOptions['onCommitted'];
  readonly #sessions = new Map<string, Live>();

  constructor(opts: UploadStoreOptions) {
    this.#paths = opts.paths;
    this.#store = opts.store;
    this.#metadata = opts.metadata;
    this.#log = opts.log.child({ module: 'uploads' });
    this.#now = opts.now ?? Date.now;
    this.#maxChunk = opts.maxChunk;
    this.#addon = opts.nativeAddon;
    this.onDiskFull = opts.onDiskFull;
    this.onCommitted = opts.onCommitted;
  }

  /**
   * Creates `<data>/uploads` and reopens the sessions in it. A session whose record or data file
   * cannot be read is removed; one whose data file is longer than its record (a chunk cut short
   * by the crash) is cut back to it, and one whose file is shorter (bytes lost with the page
   * cache) resumes from what the file holds: the client learns the offset from the status GET.
   */
  async init(): Promise<OpenReport> {
    await fsp.mkdir(this.#paths.uploads, { recursive: true });
    const report: OpenReport = { sessions: 0, removed: 0 };
    for (const name of await fsp.readdir(this.#paths.uploads)) {
      const session = isUploadId(name) ? await this.#reopen(name) : undefined;
      if (session === undefined) {
        await fsp.rm(path.join(this.#paths.uploads, name), { recursive: true, force: true });
        report.removed++;
        continue;
      }
      this.#sessions.set(name, { session, writer: undefined, busy: false });
      report.sessions++;
    }
    if (report.sessions + report.removed > 0) this.#log.info(report, 'upload sessions reopened');
    return report;
  }

  async #reopen(id: string): Promise<UploadSession | undefined> {
    const recorded = await readSession(this.#paths, id);
    if (recorded === undefined) return undefined;
    const data = this.#paths.uploadData(id);
    let onDisk: number;
    try {
      const stat = await fsp.stat(data);
      if (!stat.isFile()) return undefined;
      onDisk = stat.size;
    } catch {
      return undefined;
    }
    if (onDisk > recorded.size) await fsp.truncate(data, recorded.size);
    if (onDisk >= recorded.size) return recorded;
    const session = { ...recorded, size: onDisk };
    await writeSession(this.#paths, session);
    this.#log.warn({ id, recorded: recorded.size, size: onDisk }, 'upload data shorter than acknowledged: the session resumes from what is on disk');
    return session;
  }

  /** Starts a session for `registry`/`repo` (names the HTTP layer validated). */
  async create(registry: string, repo: string): Promise<UploadSession> {
    const id = newUploadId();
    const now = this.#now();
    const session: UploadSession = { id, registry, repo, createdAt: now, updatedAt: now, size: 0 };
    // In the map, busy, before any file exists: collect() never takes the directory for a stray.
    const live: Live = { session, writer: this.#fillWriter(), busy: true };
    this.#sessions.set(id, live);
    try {
      await fsp.mkdir(this.#paths.uploadDir(id), { recursive: true });
      await fsp.writeFile(this.#paths.uploadData(id), '', { flag: 'wx' });
      await writeSession(this.#paths, session);
    } catch (err) {
      this.#sessions.delete(id);
      await fsp.rm(this.#paths.uploadDir(id), { recursive: true, force: true });
      if (isDiskFullError(err)) throw this.#diskFull(err, 'blob upload start', 0, 0);
      throw err;
    }
    live.busy = false;
    return session;
  }

  /**
   * The session `id` of `registry`/`repo`. BLOB_UPLOAD_UNKNOWN when there is none, when it
   * belongs to another repository, and for any id that is not one this store could have made.
   */
  get(id: string, registry: string, repo: string): UploadSession {
    return this.#find(id, registry, repo).session;
  }

  /**
   * Appends `body` (a PATCH). With a range, it must start at the current size (else
   * RANGE_INVALID, 416) and the body must hold exactly its bytes; with only a Content-Length,
   * exactly that many (else BLOB_UPLOAD_INVALID, and the session keeps its previous size).
   * Returns the new size.
   */
  async append(id: string, registry: string, repo: string, body: Readable, opts: AppendOptions = {}): Promise<number> {
    const live = this.#claim(id, registry, repo, opts);
    try {
      return await this.#write(live, body, opts);
    } finally {
      live.busy = false;
    }
  }

  /**
   * Closes the session (the PUT): appends the final chunk if there is one, checks the whole
   * upload against `digest`, and commits it as a blob. An invalid or unsupported digest is
   * DIGEST_INVALID and leaves the session as it was; a digest the bytes do not match is
   * DIGEST_INVALID and removes the session.
   */
  async finish(id: string, registry: string, repo: string, digest: string, body?: Readable, opts: FinishOptions = {}): Promise<FinishedUpload> {
    this.#find(id, registry, repo);
    const parsed = parseDigest(digest);
    const live = this.#claim(id, registry, repo, opts);
    try {
      if (body !== undefined) await this.#write(live, body, opts);
      else if (opts.range !== undefined || (opts.contentLength ?? 0) > 0) {
        throw new RegistryError('BLOB_UPLOAD_INVALID', { message: 'a Content-Range or Content-Length was given without a body' });
      }
      return await this.#close(live, parsed, opts.onCommit);
    } finally {
      live.busy = false;
    }
  }

  /**
   * A whole blob in one request (POST with `?digest=`, or a PUT the HTTP layer gives a session of
   * its own): a session that exists only for this call and is removed whatever the outcome.
   */
  async putMonolithic(registry: string, repo: string, digest: string, body: Readable, opts: FinishOptions = {}): Promise<FinishedUpload> {
    parseDigest(digest);
    const session = await this.create(registry, repo);
    try {
      return await this.finish(session.id, registry, repo, digest, body, opts);
    } catch (err) {
      const live = this.#sessions.get(session.id);
      if (live !== undefined) await this.#remove(session.id);
      throw err;
    }
  }

  /** Removes the session and its data (a DELETE). */
  async cancel(id: string, registry: string, repo: string): Promise<void> {
    const live = this.#find(id, registry, repo);
    if (live.busy) throw busy(live.session.size);
    await this.#remove(id);
  }

  /**
   * Removes sessions with no accepted chunk for `olderThanMs` (the spec lets a registry time out
   * unfinished uploads), and anything in `<data>/uploads` that is not a session. Returns how many.
   */
  async collect(olderThanMs: number): Promise<number> {
    if (!(Number.isFinite(olderThanMs) && olderThanMs >= 0)) throw new Error(`Expected an age in ms, got '${olderThanMs}'`);
    const cutoff = this.#now() - olderThanMs;
    let removed = 0;
    for (const [id, live] of [...this.#sessions]) {
      if (live.busy || live.session.updatedAt >= cutoff) continue;
      await this.#remove(id);
      removed++;
      this.#log.info({ id, registry: live.session.registry, repo: live.session.repo, size: live.session.size }, 'upload session expired');
    }
    let names: string[];
    try {
      names = await fsp.readdir(this.#paths.uploads);
    } catch {
      return removed;
    }
    for (const name of names) {
      if (this.#sessions.has(name)) continue;
      await fsp.rm(path.join(this.#paths.uploads, name), { recursive: true, force: true });
      removed++;
    }
    return removed;
  }

  /** Sessions open now (for metrics). */
  get size(): number {
    return this.#sessions.size;
  }

  #find(id: string, registry: string, repo: string): Live {
    const live = isUploadId(id) ? this.#sessions.get(id) : undefined;
    if (live === undefined || live.session.registry !== registry || live.session.repo !== repo) {
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { id: id.slice(0, 100) } });
    }
    return live;
  }

  /** The session, now marked busy, after the checks that need no body: one writer, chunk order. */
  #claim(id: string, registry: string, repo: string, opts: AppendOptions): Live {
    const live = this.#find(id, registry, repo);
    const size = live.session.size;
    if (live.busy) throw busy(size);
    const { range, contentLength } = opts;
    if (range !== undefined && range.start !== size) {
      throw new RegistryError('RANGE_INVALID', {
        message: `the chunk starts at byte ${range.start} but the upload holds ${size} bytes: chunks must be sent in order`,
        detail: { size },
        headers: { Range: uploadRange(size) },
      });
    }
    if (range !== undefined && contentLength !== undefined && contentLength !== range.end - range.start + 1) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', { message: `Content-Length ${contentLength} disagrees with Content-Range ${range.start}-${range.end}` });
    }
    const declared = range !== undefined ? range.end - range.start + 1 : contentLength;
    if (declared !== undefined && this.#maxChunk !== undefined && declared > this.#maxChunk) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', { message: `a chunk may hold at most ${this.#maxChunk} bytes`, detail: { max: this.#maxChunk } });
    }
    live.busy = true;
    return live;
  }

  /** Appends `body` and records the new size; on any failure the session is as it was. */
  async #write(live: Live, body: Readable, { range, contentLength }: AppendOptions): Promise<number> {
    const { id, size: start } = live.session;
    const expected = range !== undefined ? range.end - range.start + 1 : contentLength;
    const data = this.#paths.uploadData(id);
    // A session without a live hash (reopened, or after a failure) is hashed from disk at close:
    // only the write goes through a writer whose hash is thrown away.
    const writer = live.writer ?? this.#fillWriter();
    let written: number;
    try {
      written = await appendBody(data, start, body, writer, { expected, max: this.#maxChunk });
    } catch (err) {
      // The hash saw bytes the truncate took back.
      live.writer = undefined;
      if (isDiskFullError(err)) throw this.#diskFull(err, 'blob upload', expected ?? 0, start);
      throw err;
    }
    const session: UploadSession = { ...live.session, size: start + written, updatedAt: this.#now() };
    try {
      await writeSession(this.#paths, session);
    } catch (err) {
      await fsp.truncate(data, start);
      if (isDiskFullError(err)) throw this.#diskFull(err, 'blob upload', written, start);
      throw err;
    }
    live.session = session;
    return session.size;
  }

  async #close(live: Live, digest: Digest, onCommit: CommitHook | undefined): Promise<FinishedUpload> {
    const { id, size } = live.session;
    const data = this.#paths.uploadData(id);
    // The digest ends the writer's hash: a commit that fails leaves the next try to re-hash the file.
    const actual = live.writer ? live.writer.digest() : (await hashFile(data, size)).digest('hex');
    live.writer = undefined;
    if (actual !== digest.hex) {
      await this.#remove(id);
      throw new RegistryError('DIGEST_INVALID', {
        message: `the uploaded content (${size} bytes) does not match ${digest.value}; start the upload again`,
        detail: { digest: digest.value, size },
      });
    }
    let outcome: 'committed' | 'existed';
    try {
      outcome = await commitUpload({ store: this.#store, metadata: this.#metadata, log: this.#log }, data, digest, size, onCommit);
    } catch (err) {
      if (isDiskFullError(err)) throw this.#diskFull(err, 'blob upload commit', 0, size);
      throw err;
    }
    await this.#remove(id);
    const existed = outcome === 'existed';
    this.#log.info({ digest: digest.value, size, registry: live.session.registry, repo: live.session.repo, existed }, 'blob upload committed');
    try {
      this.onCommitted?.({ digest: digest.value, size, existed });
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'after an upload commit');
    }
    return { digest: digest.value, size, existed };
  }

  async #remove(id: string): Promise<void> {
    this.#sessions.delete(id);
    await fsp.rm(this.#paths.uploadDir(id), { recursive: true, force: true });
  }

  #fillWriter(): FillWriter {
    return createFillWriter(this.#addon);
  }

  /** The client-visible error for a full disk, after telling the owner. */
  #diskFull(error: Error, what: string, needed: number, size: number): RegistryError {
    try {
      this.onDiskFull?.({ what, needed, error });
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'disk full: could not start eviction');
    }
    return new RegistryError('UNAVAILABLE', {
      message: `the disk is full: the upload stays at ${size} bytes; retry once there is room`,
      cause: error,
      headers: { Range: uploadRange(size) },
    });
  }
}

/** Another request is writing to the session: the client should ask the status and resume. */
function busy(size: number): RegistryError {
  return new RegistryError('RANGE_INVALID', {
    message: 'another request is writing to this upload; ask for its status and resume from there',
    detail: { size },
    headers: { Range: uploadRange(size) },
  });
}

/** sha256 of the first `size` bytes of `file`, for a session reopened after a restart. */
async function hashFile(file: string, size: number): Promise<Hash> {
  const hash = createHash('sha256');
  if (size === 0) return hash;
  for await (const chunk of createReadStream(file, { start: 0, end: size - 1, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash;
}
