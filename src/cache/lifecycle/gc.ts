/**
 * @module cache/lifecycle/gc
 * Garbage collection while the mirror serves (`ocimirror gc`, the scheduled gc job). Start-up
 * reconcile (cache/blob-store) handles what a crash leaves behind before any request; this
 * handles what accumulates at runtime, without stopping pulls:
 *  - files on disk without a row (and strays a blob can never be named): removed, unless a fill
 *    of that digest is in flight (it renames its file into place before writing the row);
 *  - rows without a file (removed behind our back): the row and its links go, as at start-up;
 *    manifests stay and the blob is fetched again on the next pull;
 *  - blobs no cached manifest references, not used for `grace` (a layer is fetched right after
 *    its manifest, or prefetched before, so the grace covers the gap), not pinned, not in use;
 *  - tags pointing at a manifest that is not cached, links to digests that are neither a cached
 *    blob nor a cached manifest, refs rows whose manifest is gone;
 *  - temp files not written for `grace` whose digest has no fill or reader in this process
 *    (start-up removes every temp file; a fill removes its own on failure, so these are rare).
 *    A running fill writes as bytes arrive and is bounded by its fillTimeout.
 * Hosted content (metadata/hosted-queries `holds`) is never an unreferenced blob: a pushed layer
 * waits for its manifest as long as the client likes. Hosted links to digests stored nowhere (a
 * row dropped because its file was gone) and hosted tags to manifests not stored are orphans too.
 * With `verifySizes`, every blob file is also stat'ed and one whose size differs from its row
 * is treated as a row without a file (~10–30 µs a file: run it on demand, not at start-up).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../util/logger.ts';
import { SingleFlight } from '../../util/single-flight.ts';
import type { BlobCache } from '../blobs/blob-cache.ts';
import type { HotCache } from '../hot-cache.ts';
import type { Metadata } from '../metadata/metadata.ts';
import { ContentRemover } from './removal.ts';

export interface GcOptions {
  /** Unreferenced blobs and temp files younger than this (ms) are kept. */
  grace: number;
  /** The time gc considers now (epoch ms). */
  now?: number;
  /** Also compare every blob file's size with its row. */
  verifySizes?: boolean;
}

export interface GcReport {
  readonly filesWithoutRow: number;
  readonly rowsWithoutFile: number;
  readonly unreferencedBlobs: number;
  readonly tempFilesRemoved: number;
  /** Files whose size differed from their row (only with verifySizes), removed with their row. */
  readonly sizeMismatches: number;
  readonly orphanTags: number;
  readonly orphanLinks: number;
  readonly orphanRefs: number;
  /** Unreferenced blobs past the grace kept because they are pinned or in use. */
  readonly skippedPinned: number;
  readonly skippedInUse: number;
  readonly bytesFreed: number;
}

export interface GarbageCollectorOptions {
  metadata: Metadata;
  blobs: BlobCache;
  hot: HotCache;
  pinned?: () => ReadonlySet<string>;
  log: Logger;
}

const HEX64 = /^[a-f0-9]{64}$/;
/** `<hex>.<pid>.<n>.part`, as cache/paths names temp files. */
const TEMP_NAME = /^([a-f0-9]{64})\.\d+\.\d+\.part$/;

type Tally = { -readonly [K in keyof GcReport]: GcReport[K] };

export class GarbageCollector {
  readonly #metadata: Metadata;
  readonly #blobs: BlobCache;
  readonly #hot: HotCache;
  readonly #pinned: () => ReadonlySet<string>;
  readonly #log: Logger;
  readonly #remover: ContentRemover;
  readonly #flight = new SingleFlight<GcReport>();

  constructor({ metadata, blobs, hot, pinned = () => new Set(), log }: GarbageCollectorOptions) {
    this.#metadata = metadata;
    this.#blobs = blobs;
    this.#hot = hot;
    this.#pinned = pinned;
    this.#log = log.child({ module: 'gc' });
    this.#remover = new ContentRemover({ metadata, blobs, hot });
  }

  /** One pass over disk and database. Concurrent calls share one pass (the first caller's options). */
  collectGarbage(opts: GcOptions): Promise<GcReport> {
    return this.#flight.do('gc', () => this.#collect(opts));
  }

  async #collect({ grace, now = Date.now(), verifySizes = false }: GcOptions): Promise<GcReport> {
    if (!(Number.isFinite(grace) && grace >= 0)) throw new Error(`Expected grace to be a duration in ms, got '${grace}'`);
    this.#metadata.flush();
    const tally: Tally = {
      filesWithoutRow: 0, rowsWithoutFile: 0, unreferencedBlobs: 0, tempFilesRemoved: 0, sizeMismatches: 0,
      orphanTags: 0, orphanLinks: 0, orphanRefs: 0, skippedPinned: 0, skippedInUse: 0, bytesFreed: 0,
    };
    await this.#files(tally, verifySizes);
    await this.#temps(tally, now - grace);
    await this.#unreferencedBlobs(tally, now - grace);
    this.#orphans(tally);
    const removed = tally.filesWithoutRow + tally.rowsWithoutFile + tally.unreferencedBlobs + tally.tempFilesRemoved + tally.sizeMismatches + tally.orphanTags + tally.orphanLinks + tally.orphanRefs;
    if (removed > 0) this.#log.info(tally, 'garbage collected');
    return tally;
  }

  /** Blob files against rows, both ways. */
  async #files(tally: Tally, verifySizes: boolean): Promise<void> {
    const root = this.#blobs.store.paths.blobsRoot;
    const onDisk = new Set<string>();
    for (const prefix of await readdirOrEmpty(root)) {
      const dir = path.join(root, prefix);
      for (const name of await readdirOrEmpty(dir)) {
        if (HEX64.test(name) && name.slice(0, 2) === prefix) onDisk.add(name);
        else {
          // Not where paths.ts puts a blob, so nothing can ever ask for it.
          const file = path.join(dir, name);
          tally.bytesFreed += (await sizeOf(file)) ?? 0;
          await fsp.rm(file, { force: true, recursive: true });
          tally.filesWithoutRow++;
        }
      }
    }
    for (const hex of onDisk) {
      const digest = `sha256:${hex}`;
      if (this.#metadata.getBlob(digest) !== undefined) continue;
      const file = this.#blobs.store.paths.blobFile(hex);
      const size = await sizeOf(file);
      // Decided after the await, right before the unlink is issued: a fill committing this digest
      // renames its file before writing the row, and is in flight until the row is written.
      if (size === undefined || this.#metadata.getBlob(digest) !== undefined || this.#blobs.inUse(digest)) continue;
      await fsp.rm(file, { force: true });
      tally.filesWithoutRow++;
      tally.bytesFreed += size;
    }
    const gone: string[] = [];
    for (const digest of this.#metadata.allBlobDigests()) {
      const hex = digest.slice('sha256:'.length);
      if (onDisk.has(hex)) {
        if (!verifySizes) continue;
        const size = await sizeOf(this.#blobs.store.paths.blobFile(hex));
        const row = this.#metadata.getBlob(digest);
        if (row === undefined || size === undefined || size === row.size || this.#blobs.inUse(digest)) continue;
        this.#metadata.transaction(() => this.#remover.removeRows({ blobs: [digest] }));
        await this.#blobs.store.remove(hex);
        tally.sizeMismatches++;
        tally.bytesFreed += size;
        this.#log.warn({ digest, expected: row.size, actual: size }, 'blob file size differs from its row: removed');
      } else if (!HEX64.test(hex) || !(await this.#blobs.store.exists(hex))) {
        // Looked at again: the listing may predate a fill that committed since.
        gone.push(digest);
      }
    }
    this.#metadata.transaction(() => {
      for (const digest of gone) tally.rowsWithoutFile += this.#remover.removeRows({ blobs: [digest] }).blobs.length;
    });
  }

  async #temps(tally: Tally, cutoff: number): Promise<void> {
    const tmp = this.#blobs.store.paths.tmp;
    for (const name of await readdirOrEmpty(tmp)) {
      const file = path.join(tmp, name);
      let stat;
      try {
        stat = await fsp.stat(file);
      } catch {
        continue;
      }
      if (stat.mtimeMs >= cutoff) continue;
      const hex = TEMP_NAME.exec(name)?.[1];
      if (hex !== undefined && this.#blobs.inUse(`sha256:${hex}`)) continue;
      await fsp.rm(file, { force: true, recursive: true });
      tally.tempFilesRemoved++;
      tally.bytesFreed += stat.isFile() ? stat.size : 0;
    }
  }

  async #unreferencedBlobs(tally: Tally, cutoff: number): Promise<void> {
    const pinned = this.#pinned();
    const removal = this.#metadata.transaction(() => {
      const blobs: string[] = [];
      for (const { digest } of this.#metadata.blobs.unreferencedUsedBefore(cutoff)) {
        if (this.#metadata.hosted.holds(digest)) continue;
        if (pinned.has(digest)) tally.skippedPinned++;
        else if (this.#blobs.inUse(digest)) tally.skippedInUse++;
        else blobs.push(digest);
      }
      return this.#remover.removeRows({ blobs });
    });
    tally.unreferencedBlobs += removal.blobs.length;
    tally.bytesFreed += removal.bytes;
    await this.#remover.unlink(removal);
  }

  #orphans(tally: Tally): void {
    this.#metadata.transaction(() => {
      for (const t of this.#metadata.tags.deleteOrphans()) {
        this.#hot.deleteTag(t.upstream, t.repo, t.tag);
        tally.orphanTags++;
      }
      for (const l of this.#metadata.links.deleteOrphans()) {
        this.#hot.deleteLink(l.upstream, l.repo, l.digest);
        tally.orphanLinks++;
      }
      tally.orphanRefs += this.#metadata.refs.deleteOrphans();
      const hosted = this.#metadata.hosted.deleteOrphans();
      tally.orphanLinks += hosted.links;
      tally.orphanTags += hosted.tags;
    });
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch {
    return [];
  }
}

async function sizeOf(file: string): Promise<number | undefined> {
  try {
    const stat = await fsp.stat(file);
    return stat.isFile() ? stat.size : undefined;
  } catch {
    return undefined;
  }
}
