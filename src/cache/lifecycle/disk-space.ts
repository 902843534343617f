/**
 * @module cache/lifecycle/disk-space
 * The filesystem under the data directory: its real free space (statfs) and a reserve file.
 *
 * The reserve is a few MiB of zeros kept in the data directory and deleted when the disk is full,
 * because on a truly full disk SQLite cannot write anything, not even the deletions eviction makes:
 * without the reserve nothing could ever be freed. Eviction restores it afterwards. The disk
 * counts as full while less than one reserve's worth is free.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';

export interface DiskStat {
  /** Bytes an unprivileged writer may still use (statfs bavail × bsize). */
  readonly free: number;
  /** Size of the filesystem. */
  readonly total: number;
}

export interface DiskStatus extends DiskStat {
  readonly full: boolean;
}

/** The part of DiskSpace eviction uses (tests give a fake). */
export interface DiskRoom {
  stat(): DiskStat;
  release(): Promise<number>;
  restore(): Promise<boolean>;
}

const MiB = 1 << 20;
/** 4 MiB holds the WAL pages of an eviction batch and a manifest many times over; a small disk gets 1/32 of itself. */
const RESERVE_MAX = 4 * MiB;

function statDisk(dir: string): DiskStat {
  const s = fs.statfsSync(dir);
  return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
}

export class DiskSpace implements DiskRoom {
  readonly reservePath: string;
  readonly reserveBytes: number;
  readonly #stat: () => DiskStat;

  constructor({ root, reservePath, stat = () => statDisk(root) }: { root: string; reservePath: string; stat?: () => DiskStat }) {
    this.reservePath = reservePath;
    this.#stat = stat;
    const total = this.#safeStat()?.total ?? 0;
    this.reserveBytes = Math.max(64 << 10, Math.min(RESERVE_MAX, Math.floor(total / 32 / 65536) * 65536));
  }

  stat(): DiskStat {
    return this.#stat();
  }

  /** Free space now and whether the disk counts as full; a statfs that fails reports full, free 0. */
  status(): DiskStatus {
    const s = this.#safeStat();
    if (!s) return { free: 0, total: 0, full: true };
    return { ...s, full: s.free < this.reserveBytes };
  }

  /** Deletes the reserve file; resolves with the bytes it held (0 when there was none). */
  async release(): Promise<number> {
    try {
      const { size } = await fsp.stat(this.reservePath);
      await fsp.rm(this.reservePath, { force: true });
      return size;
    } catch {
      return 0;
    }
  }

  /**
   * Writes the reserve file back when it is missing and twice its size is free (never taking the
   * last bytes a fill or SQLite could use). False when it could not.
   */
  async restore(): Promise<boolean> {
    if (fs.existsSync(this.reservePath)) return true;
    const s = this.#safeStat();
    if (!s || s.free < 2 * this.reserveBytes) return false;
    const partial = `${this.reservePath}.part`;
    try {
      // Zeros written, not a sparse file: only written blocks are really taken from the disk.
      await fsp.writeFile(partial, Buffer.alloc(this.reserveBytes), { flag: 'w' });
      await fsp.rename(partial, this.reservePath);
      return true;
    } catch {
      await fsp.rm(partial, { force: true });
      return false;
    }
  }

  #safeStat(): DiskStat | undefined {
    try {
      return this.#stat();
    } catch {
      return undefined;
    }
  }
}
