/**
 * @module cache/blob-store
 * Content-addressed blob files on disk (layout in ./paths.ts). Blobs enter only through
 * {@link BlobStore.commit}: a temp file whose sha256 and size were verified is fsync'd and
 * renamed into place, so a crash at any instant leaves either no file or a whole, correct one.
 * Start-up removes leftover temp files and reconciles SQLite rows with the files on disk.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { DataPaths } from './paths.ts';
import type { Metadata } from './metadata.ts';

/** 1 MiB reads roughly double file-serving throughput over the 64 KiB default (stack.md). */
export const READ_CHUNK = 1 << 20;

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
    const onDisk = new Map<string, string>(); // file name → full path
    for (const prefix of await fsp.readdir(this.paths.blobsRoot)) {
      const dir = path.join(this.paths.blobsRoot, prefix);
      let names: string[];
      try {
        names = await fsp.readdir(dir);
      } catch {
        continue;
      }
      // A file only counts as a blob where paths.ts would put it; anything else is a stray.
      for (const name of names) onDisk.set(name.slice(0, 2) === prefix ? name : `stray:${prefix}/${name}`, path.join(dir, name));
    }
    const rows = metadata.allBlobDigests();
    const missing: string[] = [];
    for (const digest of rows) {
      const hex = digest.slice('sha256:'.length);
      if (onDisk.delete(hex)) report.blobs++;
      else missing.push(digest);
    }
    if (missing.length > 0) {
      metadata.db.transaction(() => {
        for (const digest of missing) metadata.deleteBlob(digest);
      })();
      report.rowsWithoutFile = missing.length;
    }
    for (const file of onDisk.values()) {
      await fsp.rm(file, { force: true, recursive: true });
      report.filesWithoutRow++;
    }
    return report;
  }
}
