/**
 * @module bundle/layout-writer
 * Writes an OCI image layout (OCI image-spec, image-layout.md) as a tar stream or a
 * directory. What `ocimirror export` writes:
 *
 * ```
 * bundle.tar                       (or bundle.tar.gz / .tar.zst, or a directory, or volumes)
 * ├── oci-layout                   {"imageLayoutVersion":"1.0.0"}
 * ├── index.json                   image index (schemaVersion 2, application/vnd.oci.image.index.v1+json):
 * │                                one descriptor per exported image, annotated with
 * │                                  org.opencontainers.image.ref.name = docker.io/library/alpine:3.19
 * │                                  io.containerd.image.name          = docker.io/library/alpine:3.19
 * │                                  io.ocimirror.bundle.platforms     = linux/amd64  (only with --platform)
 * └── blobs/
 *     └── sha256/
 *         ├── <hex>                every manifest and index, the exact bytes the registry served
 *         └── <hex>                every config and layer, each digest once across all images
 * ```
 * In a tar, `oci-layout` and `index.json` come first (a reader can learn the images without
 * reading the blobs, as `--since` does), then the manifests, then the other blobs; every
 * member has mtime 0, uid/gid 0 and fixed modes, so the same content makes the same bytes.
 * In a directory, `index.json` is written last, so an interrupted export is not a layout.
 *
 * The ref.name is the full name, not only the tag: skopeo (`oci-archive:bundle.tar:NAME`)
 * matches it exactly as given, `ctr import` takes io.containerd.image.name as the image
 * name, and the importer needs the registry and repository to put the image back under.
 */
import { createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

export const LAYOUT_FILE = 'oci-layout';
export const INDEX_FILE = 'index.json';
export const LAYOUT_VERSION = { imageLayoutVersion: '1.0.0' } as const;

export function blobPath(hex: string): string {
  return `blobs/sha256/${hex}`;
}

/** Where a layout is written; entries are added one at a time, each finished before the next. */
export interface LayoutSink {
  /** A small file held in memory (oci-layout, index.json, a manifest). */
  writeFile(name: string, bytes: Buffer): Promise<void>;
  /** A blob of exactly `size` bytes read from `open()`, streamed, never held whole. */
  writeBlob(hex: string, size: number, open: () => Promise<Readable>): Promise<void>;
  /** Completes the layout (the tar trailer; a directory's index.json). */
  finish(index: Buffer): Promise<void>;
  /** Stops after a failure, leaving nothing that looks complete. */
  abort(err: Error): Promise<void>;
}

const MTIME = new Date(0);

/**
 * A layout as a tar stream into `out` (a file, a compressor, a volume writer). The index is
 * written first, so {@link LayoutSink.finish} is given it again only to keep one interface.
 */
export function tarSink(out: Writable, index: Buffer): LayoutSink & { readonly done: Promise<void> } {
  const pack = tar.pack();
  const done = pipeline(pack, out);
  done.catch(() => {}); // surfaced by finish() or by the entry that failed
  const entry = (header: Partial<tar.Header> & Pick<tar.Header, 'name'>, body: Buffer = Buffer.alloc(0)) =>
    new Promise<void>((resolve, reject) => {
      pack.entry(Object.assign({ mtime: MTIME, uid: 0, gid: 0, uname: '', gname: '' }, header), body, (err) => (err ? reject(err) : resolve()));
    });
  let started = false;
  const start = async () => {
    if (started) return;
    started = true;
    await entry({ name: LAYOUT_FILE, mode: 0o644 }, Buffer.from(JSON.stringify(LAYOUT_VERSION)));
    await entry({ name: INDEX_FILE, mode: 0o644 }, index);
    await entry({ name: 'blobs/', type: 'directory', mode: 0o755 });
    await entry({ name: 'blobs/sha256/', type: 'directory', mode: 0o755 });
  };
  return {
    done,
    async writeFile(name, bytes) {
      await start();
      await entry({ name, mode: 0o644 }, bytes);
    },
    async writeBlob(hex, size, open) {
      await start();
      const source = await open();
      const sink = pack.entry({ name: blobPath(hex), size, mode: 0o644, mtime: MTIME, uid: 0, gid: 0, uname: '', gname: '' });
      await pipeline(source, sink);
    },
    async finish() {
      await start();
      pack.finalize();
      await done;
    },
    async abort(err) {
      pack.destroy(err);
      await done.catch(() => {});
    },
  };
}

/** A layout as a directory `dir` (created; it must not exist or be empty). */
export async function dirSink(dir: string): Promise<LayoutSink> {
  await fsp.mkdir(dir, { recursive: true });
  const existing = await fsp.readdir(dir);
  if (existing.length > 0) throw new Error(`${dir} is not empty: export into a new directory`);
  await fsp.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  await fsp.writeFile(path.join(dir, LAYOUT_FILE), JSON.stringify(LAYOUT_VERSION));
  return {
    async writeFile(name, bytes) {
      await fsp.writeFile(path.join(dir, name), bytes);
    },
    async writeBlob(hex, _size, open) {
      const source = await open();
      await pipeline(source, createWriteStream(path.join(dir, blobPath(hex)), { flags: 'wx' }));
    },
    async finish(index) {
      const temp = path.join(dir, `${INDEX_FILE}.part`);
      await fsp.writeFile(temp, index);
      await fsp.rename(temp, path.join(dir, INDEX_FILE));
    },
    async abort() {
      // The blobs stay for inspection; without index.json the directory is not a layout.
    },
  };
}

/**
 * A layout read entry by entry (bundle/layout-reader: a directory) written as a tar into `out`,
 * each body streamed, in the order given; `out` is ended after the end-of-archive blocks, or
 * destroyed on failure.
 */
export async function entriesToTar(entries: AsyncIterable<{ name: string; size: number; body: Readable }>, out: Writable): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, out);
  done.catch(() => {});
  try {
    for await (const e of entries) {
      const sink = pack.entry({ name: e.name, size: e.size, mode: 0o644, mtime: MTIME, uid: 0, gid: 0, uname: '', gname: '' });
      await pipeline(e.body, sink);
    }
    pack.finalize();
    await done;
  } catch (err) {
    pack.destroy(err as Error);
    await done.catch(() => {});
    throw err;
  }
}

/** A Readable of a Buffer, for callers that hand small content to writeBlob. */
export function bufferSource(bytes: Buffer): () => Promise<Readable> {
  return async () => Readable.from([bytes], { objectMode: false });
}
