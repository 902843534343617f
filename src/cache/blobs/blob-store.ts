/**
 * @module cache/blobs/blob-store
 * Content-addressed blob files on disk (layout in ./paths.ts). Blobs enter only through
 * {@link BlobStore.commit}: a temp file whose sha256 and size were verified is fsync'd and
 * renamed into place, so a crash at any instant leaves either no file or a whole, correct one.
 * Start-up removes leftover temp files and reconciles SQLite rows with the files on disk.
 */
import { readdirSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { DataPaths } from '../paths.ts';
import type { Metadata } from '../metadata/metadata.ts';

export interface ReconcileReport {
  tempFilesRemoved: number;
  rowsWithoutFile: number;
  filesWithoutRow: number;
  blobs: number;
}

export class BlobStore {
  readonly paths: DataPaths;
  #sequence = 0;

  constructor(paths: DataPaths) {
    this.paths = paths;
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.paths.blobsRoot, { recursive: true });
    await fsp.mkdir(this.paths.tmp, { recursive: true });
  }

  /** A fresh temp path for a fill of `hex`; unique per process and fill. */
  tempPath(hex: string): string {
    return this.paths.tempFile(hex, ++this.#sequence);
  }

  /** Moves a verified temp file into place. The caller fsync'd it; the directory is synced too. */
  async commit(tempPath: string, hex: string): Promise<void> {
    const dir = this.paths.blobDir(hex);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.rename(tempPath, this.paths.blobFile(hex));
    const handle = await fsp.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async remove(hex: string): Promise<void> {
    await fsp.rm(this.paths.blobFile(hex), { force: true });
  }

  async exists(hex: string): Promise<boolean> {
    try {
      await fsp.access(this.paths.blobFile(hex));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Start-up consistency: temp files are leftovers of fills that never committed; a row whose
   * file is gone is dropped; a file without a row (a crash between rename and the SQLite
   * commit) is removed rather than trusted, since nothing vouches for it any more.
   */
  async reconcile(metadata: Metadata): Promise<ReconcileReport> {
    const report: ReconcileReport = { tempFilesRemoved: 0, rowsWithoutFile: 0, filesWithoutRow: 0, blobs: 0 };
    for (const name of await fsp.readdir(this.paths.tmp)) {
      await fsp.rm(path.join(this.paths.tmp, name), { force: true, recursive: true });
      report.tempFilesRemoved++;
    }
    // One shard at a time (a prefix directory against the rows in its digest range), so only a few
    // hundred names are alive at once: holding all 100k names and digests together made the
    // garbage collector the largest cost of a start-up. Synchronous reads, because nothing is
    // served until this returns, and 256 readdirSync calls took half the time of as many round
    // trips through the threadpool (100k files: 85 against 170 ms). A path is built only for a
    // file that is removed. Rows are sha256 by construction (registry/digest.ts), so the 256
    // ranges cover them all.
    const missing: string[] = [];
    const strays: string[] = []; // files to remove: without a row, or not where paths.ts puts them
    const entries = new Set(readdirSync(this.paths.blobsRoot));
    for (let i = 0; i < 256; i++) {
      const prefix = i.toString(16).padStart(2, '0');
      const names = entries.delete(prefix) ? readdirOrEmpty(path.join(this.paths.blobsRoot, prefix)) : [];
      const onDisk = new Set<string>();
      for (const name of names) {
        if (name.slice(0, 2) === prefix) onDisk.add(name);
        else strays.push(path.join(this.paths.blobsRoot, prefix, name));
      }
      for (const digest of metadata.blobDigestsWithPrefix(prefix)) {
        if (onDisk.delete(digest.slice('sha256:'.length))) report.blobs++;
        else missing.push(digest);
      }
      for (const name of onDisk) strays.push(path.join(this.paths.blobsRoot, prefix, name));
    }
    // Anything else under blobs/sha256/ holds no blob paths.ts would name.
    for (const entry of entries) {
      for (const name of readdirOrEmpty(path.join(this.paths.blobsRoot, entry))) strays.push(path.join(this.paths.blobsRoot, entry, name));
    }
    if (missing.length > 0) {
      metadata.transaction(() => {
        for (const digest of missing) metadata.deleteBlob(digest);
      });
      report.rowsWithoutFile = missing.length;
    }
    for (const file of strays) {
      await fsp.rm(file, { force: true, recursive: true });
      report.filesWithoutRow++;
    }
    return report;
  }
}

/** A directory's names; none when it is not a directory or cannot be read. */
function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
