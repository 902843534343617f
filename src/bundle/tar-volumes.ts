/**
 * @module bundle/tar-volumes
 * A bundle split into volumes for media with a size limit (`--max-size 4GiB`: FAT32 sticks,
 * optical discs, upload limits of a transfer portal): the (compressed) tar byte stream cut
 * into `NAME.000`, `NAME.001`, … of at most maxSize bytes each, plus `NAME.volumes.json`
 * naming each volume with its size and sha256. `cat NAME.0* > NAME` rebuilds the plain
 * archive; import reads the volumes in the manifest's order and checks each one's size and
 * sha256 as it goes, so a volume that is missing, swapped or damaged is named.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { z } from 'zod';
import { BundleError } from './bundle-error.ts';
import type { Compression } from './compression.ts';

export interface VolumeEntry {
  /** File name, in the manifest's directory (no path). */
  readonly name: string;
  readonly size: number;
  /** Hex sha256 of the volume's bytes. */
  readonly sha256: string;
}

export interface VolumeManifest {
  /** The archive the volumes make up, concatenated (`bundle.tar`). */
  readonly bundle: string;
  readonly compression: Compression;
  /** Total bytes and sha256 of the concatenation. */
  readonly size: number;
  readonly sha256: string;
  readonly volumes: readonly VolumeEntry[];
}

const VOLUME_NAME = /^[A-Za-z0-9._+-]{1,255}$/;
const HEX64 = /^[a-f0-9]{64}$/;

const MANIFEST = z.object({
  ocimirrorVolumes: z.literal(1),
  bundle: z.string().regex(VOLUME_NAME),
  compression: z.enum(['none', 'gzip', 'zstd']),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(HEX64),
  volumes: z.array(z.object({ name: z.string().regex(VOLUME_NAME), size: z.number().int().nonnegative(), sha256: z.string().regex(HEX64) })).min(1),
});

/** `bundle.tar.000` for the first volume of `bundle.tar`. */
export function volumeName(bundle: string, index: number): string {
  return `${bundle}.${String(index).padStart(3, '0')}`;
}

export function volumeManifestName(bundle: string): string {
  return `${bundle}.volumes.json`;
}

/**
 * The volume manifest an import argument means, if any: the manifest itself, a volume
 * (`bundle.tar.000`) beside it, or the bundle's own name when only its volumes exist.
 */
export async function findVolumeManifest(input: string): Promise<string | undefined> {
  if (input.endsWith('.volumes.json')) return input;
  const m = /^(.*)\.\d{3,}$/.exec(input);
  const candidates = m ? [volumeManifestName(m[1] as string)] : [];
  candidates.push(volumeManifestName(input));
  for (const file of candidates) {
    try {
      if ((await fsp.stat(file)).isFile()) return file;
    } catch {
      // not this one
    }
  }
  return undefined;
}

/**
 * A Writable that cuts what is written into volumes of at most `maxSize` bytes at `base`.000,
 * .001, …; {@link manifest} (after finish) describes them. The manifest file is the caller's
 * to write, last, so a set of volumes without one is visibly incomplete.
 */
export class VolumeWriter extends Writable {
  readonly #base: string;
  readonly #maxSize: number;
  readonly #volumes: VolumeEntry[] = [];
  readonly #whole: Hash = createHash('sha256');
  #total = 0;
  #handle: fsp.FileHandle | undefined;
  #hash: Hash | undefined;
  #size = 0;

  constructor(base: string, maxSize: number) {
    super({ highWaterMark: 1 << 20 });
    if (!(Number.isSafeInteger(maxSize) && maxSize > 0)) throw new BundleError('BUNDLE_USAGE', `--max-size must be a positive number of bytes, got ${maxSize}`);
    this.#base = base;
    this.#maxSize = maxSize;
  }

  /** Paths of the volumes written so far (for cleanup after a failure). */
  get files(): string[] {
    const n = this.#volumes.length + (this.#handle ? 1 : 0);
    return Array.from({ length: n }, (_, i) => volumeName(this.#base, i));
  }

  manifest(compression: Compression): VolumeManifest {
    return { bundle: path.basename(this.#base), compression, size: this.#total, sha256: this.#whole.copy().digest('hex'), volumes: [...this.#volumes] };
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#put(chunk).then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    // An empty stream still makes one (empty) volume, so the manifest always names at least one.
    const finish = async () => {
      if (this.#handle === undefined && this.#volumes.length === 0) await this.#open();
      await this.#close();
    };
    finish().then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const handle = this.#handle;
    this.#handle = undefined;
    (handle ? handle.close() : Promise.resolve()).then(() => cb(err), () => cb(err));
  }

  async #put(chunk: Buffer): Promise<void> {
    let rest = chunk;
    while (rest.length > 0) {
      if (this.#handle === undefined) await this.#open();
      const room = this.#maxSize - this.#size;
      const piece = rest.length > room ? rest.subarray(0, room) : rest;
      await writeFully(this.#handle as fsp.FileHandle, piece);
      this.#hash?.update(piece);
      this.#whole.update(piece);
      this.#size += piece.length;
      this.#total += piece.length;
      rest = rest.subarray(piece.length);
      if (this.#size >= this.#maxSize) await this.#close();
    }
  }

  async #open(): Promise<void> {
    this.#handle = await fsp.open(volumeName(this.#base, this.#volumes.length), 'w');
    this.#hash = createHash('sha256');
    this.#size = 0;
  }

  async #close(): Promise<void> {
    const handle = this.#handle;
    if (handle === undefined) return;
    this.#handle = undefined;
    await handle.sync();
    await handle.close();
    this.#volumes.push({ name: path.basename(volumeName(this.#base, this.#volumes.length)), size: this.#size, sha256: (this.#hash as Hash).digest('hex') });
  }
}

async function writeFully(handle: fsp.FileHandle, buf: Buffer): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await handle.write(buf, done, buf.length - done);
    done += bytesWritten;
  }
}

export async function writeVolumeManifest(file: string, manifest: VolumeManifest): Promise<void> {
  await fsp.writeFile(file, `${JSON.stringify({ ocimirrorVolumes: 1, ...manifest }, null, 2)}\n`);
}

export async function readVolumeManifest(file: string): Promise<VolumeManifest> {
  let parsed;
  try {
    parsed = MANIFEST.safeParse(JSON.parse(await fsp.readFile(file, 'utf8')));
  } catch (err) {
    throw new BundleError('BUNDLE_INVALID', `${file} is not a volume manifest: ${(err as Error).message}`, { cause: err });
  }
  if (!parsed.success) throw new BundleError('BUNDLE_INVALID', `${file} is not a valid volume manifest: ${parsed.error.issues[0]?.message ?? 'bad shape'}`);
  const m = parsed.data;
  const total = m.volumes.reduce((n, v) => n + v.size, 0);
  if (total !== m.size) throw new BundleError('BUNDLE_INVALID', `${file}: the volumes add up to ${total} bytes, the manifest says ${m.size}`);
  return { bundle: m.bundle, compression: m.compression, size: m.size, sha256: m.sha256, volumes: m.volumes };
}

/**
 * The volumes of `manifest` (in `dir`) as one stream, in order. Each volume's size and sha256
 * are checked as its last byte is read, and the whole's at the end; a mismatch fails the
 * stream naming the volume, before anything after it is read.
 */
export function readVolumes(dir: string, manifest: VolumeManifest): Readable {
  async function* chain(): AsyncGenerator<Buffer> {
    const whole = createHash('sha256');
    for (const v of manifest.volumes) {
      const file = path.join(dir, v.name);
      const hash = createHash('sha256');
      let size = 0;
      let stream;
      try {
        const stat = await fsp.stat(file);
        if (!stat.isFile()) throw new Error('not a regular file');
        stream = createReadStream(file, { highWaterMark: 1 << 20 });
      } catch (err) {
        throw new BundleError('BUNDLE_INVALID', `volume ${v.name} of ${manifest.bundle} cannot be read: ${(err as Error).message}`, { cause: err });
      }
      for await (const chunk of stream) {
        const buf = chunk as Buffer;
        size += buf.length;
        if (size > v.size) throw new BundleError('BUNDLE_INVALID', `volume ${v.name} is larger than the ${v.size} bytes its manifest gives`);
        hash.update(buf);
        whole.update(buf);
        yield buf;
      }
      if (size !== v.size) throw new BundleError('BUNDLE_INVALID', `volume ${v.name} holds ${size} bytes, its manifest gives ${v.size}: it is truncated`);
      const actual = hash.digest('hex');
      if (actual !== v.sha256) throw new BundleError('BUNDLE_INVALID', `volume ${v.name} does not match its sha256 in the manifest (${actual} != ${v.sha256}): it is damaged or from another bundle`);
    }
    if (whole.digest('hex') !== manifest.sha256) throw new BundleError('BUNDLE_INVALID', `the volumes of ${manifest.bundle} do not match the bundle's sha256 in the manifest`);
  }
  return Readable.from(chain(), { objectMode: false });
}
