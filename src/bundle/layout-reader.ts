/**
 * @module bundle/layout-reader
 * Reads an OCI image layout (bundle/layout-writer) from a tar stream, a directory, or volumes,
 * as a sequence of checked entries: `oci-layout`, `index.json` and `blobs/sha256/<64 hex>`.
 * Nothing is ever extracted: an entry name is parsed into one of those three things (a blob's
 * name into a digest) or the archive is refused, so no name from an archive becomes a path.
 *
 * Refused, naming the entry: absolute names, `..` components, links of either kind, devices
 * and FIFOs, a name that appears twice, blob names that are not lower-case sha256 hex, digest
 * algorithms other than sha256 (they could not be verified), and an archive that ends early
 * (cut inside an entry, or without tar's two zero blocks at the end). Other regular files
 * (a README next to the layout) are skipped with a warning. Content is not hashed here: the
 * importer verifies each blob while committing it.
 */
import { constants as fsConstants, createReadStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { parseDigest, type Digest } from '../registry/digest.ts';
import { BundleError } from './bundle-error.ts';
import { decompressor, detectCompression, type Compression } from './compression.ts';
import { findVolumeManifest, readVolumeManifest, readVolumes } from './tar-volumes.ts';

export type LayoutEntry =
  | { readonly kind: 'oci-layout' | 'index'; readonly name: string; readonly size: number; readonly body: Readable }
  | { readonly kind: 'blob'; readonly name: string; readonly digest: Digest; readonly size: number; readonly body: Readable };

/** What an archive member name is, once checked (see the module comment). */
export type EntryClass =
  | { kind: 'oci-layout' | 'index'; name: string }
  | { kind: 'blob'; name: string; digest: Digest }
  | { kind: 'directory'; name: string }
  | { kind: 'ignored'; name: string };

export interface ReadOptions {
  /** A skipped entry, for the caller to log. */
  onWarning?: (message: string) => void;
}

export interface OpenedBundle {
  /** How the input was read, for messages: 'tar', 'tar+gzip', 'directory', '3 volumes (zstd)'. */
  readonly description: string;
  /** Bytes the input holds (compressed), for progress; undefined for a directory. */
  readonly totalBytes: number | undefined;
  readonly entries: AsyncGenerator<LayoutEntry>;
}

const BLOB_NAME = /^blobs\/sha256\/([a-f0-9]{64})$/;
const TAR_BLOCK = 512;
/** Tar's end-of-archive marker: two zero blocks. */
const TRAILER = 2 * TAR_BLOCK;

function invalid(message: string): BundleError {
  return new BundleError('BUNDLE_INVALID', message);
}

/** Checks one member's name and type; throws for anything the module comment says is refused. */
export function classifyEntry(rawName: string, type: string): EntryClass {
  const shown = JSON.stringify(rawName.slice(0, 200));
  if (rawName.includes('\0') || rawName.includes('\\')) throw invalid(`entry ${shown} has a NUL or backslash in its name`);
  if (rawName.startsWith('/')) throw invalid(`entry ${shown} has an absolute name`);
  let name = rawName;
  while (name.startsWith('./')) name = name.slice(2);
  if (type === 'directory') name = name.replace(/\/+$/, '');
  const parts = name === '' || name === '.' ? [] : name.split('/');
  if (parts.includes('..')) throw invalid(`entry ${shown} climbs out of the layout with '..'`);
  if (parts.some((p) => p === '' || p === '.')) throw invalid(`entry ${shown} has an empty or '.' component`);
  if (type === 'directory') {
    if (parts.length === 0 || name === 'blobs' || name === 'blobs/sha256') return { kind: 'directory', name };
    if (parts[0] === 'blobs' && parts.length === 2) throw invalid(`entry ${shown}: digest algorithm '${parts[1]}' is not supported (only sha256 can be verified)`);
    return { kind: 'ignored', name };
  }
  if (type !== 'file' && type !== 'contiguous-file') throw invalid(`entry ${shown} is a ${type}: a bundle holds regular files only`);
  if (name === 'oci-layout') return { kind: 'oci-layout', name };
  if (name === 'index.json') return { kind: 'index', name };
  const m = BLOB_NAME.exec(name);
  if (m) return { kind: 'blob', name, digest: parseDigest(`sha256:${m[1]}`) };
  if (name.startsWith('blobs/sha256/')) throw invalid(`entry ${shown} is not named by a sha256 digest (64 lower-case hex digits)`);
  if (name.startsWith('blobs/')) throw invalid(`entry ${shown}: only sha256 blobs are supported (other algorithms cannot be verified)`);
  return { kind: 'ignored', name };
}

/** Keeps the last {@link TRAILER} bytes that went through, to check a tar's end-of-archive marker. */
export class TailKeeper extends Transform {
  tail: Buffer = Buffer.alloc(0);
  total = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.total += chunk.length;
    this.tail = chunk.length >= TRAILER ? chunk.subarray(chunk.length - TRAILER) : Buffer.concat([this.tail, chunk]).subarray(-TRAILER);
    cb(null, chunk);
  }

  get endsWithTrailer(): boolean {
    return this.tail.length === TRAILER && this.tail.every((b) => b === 0);
  }
}

/** Entries of an uncompressed tar stream. */
export async function* tarEntries(stream: Readable, opts: ReadOptions = {}): AsyncGenerator<LayoutEntry> {
  const keeper = new TailKeeper();
  const extract = tar.extract();
  // Failures of the input or the parser surface in the loop below; the promise is only watched.
  const piped = pipeline(stream, keeper, extract).catch((err: unknown) => {
    extract.destroy(err as Error);
  });
  const seen = new Set<string>();
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const cls = classifyEntry(h.name, h.type ?? 'file');
      if (cls.kind === 'directory' || cls.kind === 'ignored') {
        if (cls.kind === 'ignored') opts.onWarning?.(`skipping ${JSON.stringify(cls.name)}: not part of an OCI image layout`);
        entry.resume();
        continue;
      }
      if (seen.has(cls.name)) throw invalid(`entry ${JSON.stringify(cls.name)} appears twice in the archive`);
      seen.add(cls.name);
      const size = h.size ?? 0;
      const body = Readable.from(entry, { objectMode: false });
      yield cls.kind === 'blob' ? { kind: 'blob', name: cls.name, digest: cls.digest, size, body } : { kind: cls.kind, name: cls.name, size, body };
      // Whatever the consumer left unread is skipped, so the archive goes on to the next entry.
      if (!body.readableEnded) {
        body.resume();
        await new Promise<void>((resolve, reject) => body.once('end', resolve).once('error', reject));
      }
    }
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throw invalid(`the archive cannot be read: ${(err as Error).message}${/end of data/i.test((err as Error).message) ? ' (truncated?)' : ''}`);
  } finally {
    if (!extract.destroyed) extract.destroy();
    stream.destroy();
    await piped;
  }
  if (!keeper.endsWithTrailer) throw invalid(`the archive ends after ${keeper.total} bytes without tar's end-of-archive blocks: it is truncated`);
}

/**
 * Entries of a layout directory: `oci-layout` and `index.json` first, then the blobs. A
 * symbolic link anywhere in the layout is refused, and files are opened with O_NOFOLLOW, so
 * a link swapped in while reading is refused too.
 */
export async function* dirEntries(root: string, opts: ReadOptions = {}): AsyncGenerator<LayoutEntry> {
  const check = async (file: string, shown: string, want: 'file' | 'dir'): Promise<boolean> => {
    const st = await fsp.lstat(file);
    if (st.isSymbolicLink()) throw invalid(`${shown} is a symbolic link: a bundle holds regular files only`);
    if (want === 'dir' ? st.isDirectory() : st.isFile()) return true;
    if (st.isDirectory() || st.isFile()) return false;
    throw invalid(`${shown} is not a regular file`);
  };
  const open = async (file: string): Promise<{ size: number; body: Readable }> => {
    const handle = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    const st = await handle.stat();
    return { size: st.size, body: handle.createReadStream({ highWaterMark: 1 << 20 }) };
  };
  const names = await fsp.readdir(root);
  for (const name of names) {
    const known = name === 'oci-layout' || name === 'index.json' || name === 'blobs';
    const ok = await check(path.join(root, name), JSON.stringify(name), name === 'blobs' ? 'dir' : 'file');
    if (!known || !ok) opts.onWarning?.(`skipping ${JSON.stringify(name)}: not part of an OCI image layout`);
  }
  for (const [name, kind] of [['oci-layout', 'oci-layout'], ['index.json', 'index']] as const) {
    if (!names.includes(name) || !(await check(path.join(root, name), name, 'file'))) continue;
    yield { kind, name, ...(await open(path.join(root, name))) };
  }
  if (!names.includes('blobs') || !(await check(path.join(root, 'blobs'), 'blobs', 'dir'))) return;
  for (const alg of await fsp.readdir(path.join(root, 'blobs'))) {
    const dir = path.join(root, 'blobs', alg);
    const isDir = await check(dir, `blobs/${alg}`, 'dir');
    if (!isDir) {
      opts.onWarning?.(`skipping ${JSON.stringify(`blobs/${alg}`)}: not part of an OCI image layout`);
      continue;
    }
    if (alg !== 'sha256') throw invalid(`blobs/${alg}: only sha256 blobs are supported (other algorithms cannot be verified)`);
    for (const hex of await fsp.readdir(dir)) {
      const name = `blobs/sha256/${hex}`;
      if (!(await check(path.join(dir, hex), name, 'file'))) throw invalid(`${name} is a directory`);
      const cls = classifyEntry(name, 'file');
      if (cls.kind !== 'blob') continue;
      yield { kind: 'blob', name, digest: cls.digest, ...(await open(path.join(dir, hex))) };
    }
  }
}

/** Counts bytes flowing through, for progress. */
function counter(onBytes: ((n: number) => void) | undefined): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onBytes?.(chunk.length);
      cb(null, chunk);
    },
  });
}

async function peek(file: string, n: number): Promise<Buffer> {
  const handle = await fsp.open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await handle.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** A bundle file or its volumes as one plain tar byte stream (decompressed), for import here or sending elsewhere. */
export interface TarInput {
  /** How the input was read, for messages: 'tar', 'tar (gzip)', '3 volume(s) of bundle.tar (zstd)'. */
  readonly description: string;
  /** Bytes the input holds (compressed), for progress. */
  readonly totalBytes: number;
  /** The tar's length when it is the input's length (an uncompressed file or volumes). */
  readonly tarBytes: number | undefined;
  readonly stream: Readable;
}

/**
 * Opens a tar (plain, gzip or zstd, told by its first bytes) or a set of volumes (the volume
 * manifest, any volume, or the bundle name they were cut from) as a plain tar stream; a
 * failure of the chain (a bad volume, a corrupt gzip) fails the stream. Undefined for a directory.
 */
export async function openTarInput(input: string, opts: { onBytes?: ((n: number) => void) | undefined } = {}): Promise<TarInput | undefined> {
  let stat;
  try {
    stat = await fsp.stat(input);
  } catch {
    stat = undefined;
  }
  if (stat?.isDirectory()) return undefined;
  const volumes = stat === undefined || /\.(volumes\.json|\d{3,})$/.test(input) ? await findVolumeManifest(input) : undefined;
  let raw: Readable;
  let compression: Compression;
  let description: string;
  let totalBytes: number;
  if (volumes !== undefined) {
    const manifest = await readVolumeManifest(volumes);
    raw = readVolumes(path.dirname(volumes), manifest);
    compression = manifest.compression;
    totalBytes = manifest.size;
    description = `${manifest.volumes.length} volume(s) of ${manifest.bundle}`;
  } else {
    if (stat === undefined) throw new BundleError('BUNDLE_USAGE', `${input} does not exist (nor a volume manifest for it)`);
    if (!stat.isFile()) throw new BundleError('BUNDLE_USAGE', `${input} is neither a regular file nor a directory`);
    compression = detectCompression(await peek(input, 4));
    raw = createReadStream(input, { highWaterMark: 1 << 20 });
    totalBytes = stat.size;
    description = 'tar';
  }
  if (compression !== 'none') description += ` (${compression})`;
  const stream = new PassThrough({ highWaterMark: 1 << 20 });
  pipeline(raw, counter(opts.onBytes), decompressor(compression), stream).catch((err: unknown) => stream.destroy(err as Error));
  return { description, totalBytes, tarBytes: compression === 'none' ? totalBytes : undefined, stream };
}

/**
 * Opens what `input` names: a layout directory, a tar (plain, gzip or zstd, told by its first
 * bytes), or a set of volumes (the volume manifest, any volume, or the bundle name they were
 * cut from). `onBytes` counts the input's bytes as they are read.
 */
export async function openBundle(input: string, opts: ReadOptions & { onBytes?: (n: number) => void } = {}): Promise<OpenedBundle> {
  const tarInput = await openTarInput(input, opts);
  if (tarInput === undefined) return { description: 'directory', totalBytes: undefined, entries: dirEntries(input, opts) };
  return { description: tarInput.description, totalBytes: tarInput.totalBytes, entries: tarEntries(tarInput.stream, opts) };
}

/**
 * A plain tar arriving on `input` (an HTTP request body). The reader works on a copy piped
 * from it, so stopping early (a blob that does not verify) leaves `input` for its owner to
 * drain or close rather than destroying it; `input` failing (the client gone) fails the read.
 */
export function openTarStream(input: Readable, opts: ReadOptions & { onBytes?: (n: number) => void } = {}): OpenedBundle {
  const stream = new PassThrough({ highWaterMark: 1 << 20 });
  const fail = (err: Error) => stream.destroy(err);
  const aborted = () => fail(new Error('the sender went away before the end of the archive'));
  input.once('error', fail);
  input.once('aborted', aborted);
  const counting = counter(opts.onBytes);
  input.pipe(counting).pipe(stream);
  stream.once('close', () => {
    input.off('error', fail);
    input.off('aborted', aborted);
    input.unpipe(counting);
  });
  return { description: 'tar stream', totalBytes: undefined, entries: tarEntries(stream, opts) };
}

/** The whole body of a small entry (oci-layout, index.json), refused past `max` bytes. */
export async function readSmall(entry: LayoutEntry, max: number): Promise<Buffer> {
  if (entry.size > max) throw invalid(`${entry.name} is ${entry.size} bytes, more than the ${max} allowed`);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of entry.body) {
    n += (chunk as Buffer).length;
    if (n > max) throw invalid(`${entry.name} is more than the ${max} bytes allowed`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
