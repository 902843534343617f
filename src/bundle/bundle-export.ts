/**
 * @module bundle/bundle-export
 * `exportBundle`: makes sure images are cached (fetching what is missing through the
 * prefetcher, the same fills a client pull uses), then writes them as one OCI image layout
 * (bundle/layout-writer) to a tar — plain, gzip or zstd, whole or cut into volumes — or a
 * directory. Blobs stream from the blob store into the output; nothing is staged. The two steps
 * are apart (`planExport`, then `writeExportTar` into any Writable) so the admin API can answer
 * a planning failure as JSON and then stream the tar into the HTTP response.
 *
 * With `since` (the index.json of an earlier bundle, or that bundle), blobs the earlier bundle
 * carried are left out: a differential bundle. Its index.json still names every image and it
 * carries every manifest, so importing it needs only the earlier bundle's blobs to be there.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { finished, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { MirrorCore } from '../core.ts';
import { parseImageRef, formatImageRef } from '../registry/image-ref.ts';
import { declaredMediaType } from '../registry/media-types.ts';
import type { Descriptor } from '../registry/manifest.ts';
import { BundleError } from './bundle-error.ts';
import { walkImage, type GraphManifest } from './bundle-graph.ts';
import { assertZstdAvailable, compressionForName, compressor, type Compression } from './compression.ts';
import { bufferSource, dirSink, tarSink, type LayoutSink } from './layout-writer.ts';
import { openBundle, readSmall } from './layout-reader.ts';
import { volumeManifestName, VolumeWriter, writeVolumeManifest } from './tar-volumes.ts';

export const REF_NAME = 'org.opencontainers.image.ref.name';
export const CONTAINERD_NAME = 'io.containerd.image.name';
/** Platforms an export was limited to: an index's other entries are absent on purpose. */
export const PLATFORMS_ANNOTATION = 'io.ocimirror.bundle.platforms';
export const INDEX_MEDIA_TYPE = 'application/vnd.oci.image.index.v1+json';
export const INDEX_MAX_BYTES = 8 << 20;

export type BundleProgress =
  | { event: 'image'; image: string; digest: string; manifests: number; blobs: number; bytes: number; fetched: number }
  | { event: 'blob'; digest: string; size: number; blobsDone: number; blobsTotal: number; bytesDone: number; bytesTotal: number }
  | { event: 'bytes'; bytesDone: number; bytesTotal: number | undefined };

export interface ExportOptions {
  /** A file (`.tar`, `.tar.gz`, `.tar.zst`) or, with format 'dir' or a trailing '/', a directory. */
  output: string;
  format?: 'tar' | 'dir' | undefined;
  /** Default: from the output's name. */
  compress?: Compression | undefined;
  /** Cut the tar into volumes of at most this many bytes. */
  maxSize?: number | undefined;
  /** An earlier bundle or its index.json. */
  since?: string | undefined;
  /** 'os/arch[/variant]' entries of an index to export ([] = all). */
  platforms?: readonly string[] | undefined;
  onProgress?: ((p: BundleProgress) => void) | undefined;
  onWarning?: ((message: string) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface ExportSummary {
  images: number;
  manifests: number;
  blobs: number;
  /** Blobs left out because the `since` bundle carried them. */
  skippedBlobs: number;
  /** Content bytes written (manifests and blobs, before compression). */
  bytes: number;
  seconds: number;
  mibPerSecond: number;
  /** The files written: the tar, the volumes and their manifest, or the directory. */
  files: string[];
}

export interface ExportImage {
  name: string;
  top: GraphManifest;
  platforms: readonly string[];
}

/** What an export writes, known before its first byte: the mirror answers errors up to here as JSON. */
export interface ExportPlan {
  readonly images: readonly ExportImage[];
  /** Every manifest and index, children before parents. */
  readonly manifests: readonly GraphManifest[];
  /** The blobs to write (those an earlier bundle carried left out). */
  readonly blobs: readonly BlobRow[];
  readonly skippedBlobs: number;
  readonly index: Buffer;
  /** Content bytes (manifests and blobs) the tar carries. */
  readonly bytes: number;
}

interface BlobRow {
  digest: string;
  size: number;
  mediaType: string | null;
}

export interface PlanOptions {
  platforms?: readonly string[] | undefined;
  /** An earlier bundle or its index.json (a path). */
  since?: string | undefined;
  /** An earlier bundle's index.json, already read (what `export --url` sends). */
  sinceIndex?: unknown;
  onProgress?: ((p: BundleProgress) => void) | undefined;
  onWarning?: ((message: string) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface WriteOptions {
  onProgress?: ((p: BundleProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * Makes sure every image is cached (fetching what is missing) and works out what the bundle
 * holds. Nothing is written yet, so a failure here leaves no output behind.
 */
export async function planExport(core: MirrorCore, images: readonly string[], opts: PlanOptions = {}): Promise<ExportPlan> {
  const platforms = opts.platforms ?? [];
  if (images.length === 0) throw new BundleError('BUNDLE_USAGE', 'name at least one image to export');
  const exported: ExportImage[] = [];
  const manifests = new Map<string, GraphManifest>();
  const blobs = new Map<string, Descriptor>();
  for (const text of images) {
    opts.signal?.throwIfAborted();
    const ref = parseImageRef(text);
    const route = core.router.resolve(`${ref.registry}/${ref.repo}`);
    const reference = ref.digest ?? (ref.tag as string);
    const fetched = await core.prefetcher.image(route, reference, { platforms, signal: opts.signal });
    const top = cachedManifest(core, fetched.digest, undefined);
    const graph = walkImage(top, (d) => cachedManifest(core, d.digest, d.mediaType, true)?.bytes, platforms);
    if (graph.missingManifests.length > 0) {
      const list = graph.missingManifests.map((d) => d.digest);
      throw new BundleError('BUNDLE_INCOMPLETE', `${text}: manifests ${list.join(', ')} are not cached after the prefetch`, { digests: list });
    }
    for (const m of graph.manifests) manifests.set(m.digest, m);
    for (const [d, desc] of graph.blobs) blobs.set(d, desc);
    const name = formatImageRef(ref);
    exported.push({ name, top, platforms });
    opts.onProgress?.({ event: 'image', image: name, digest: top.digest, manifests: graph.manifests.length, blobs: graph.blobs.size, bytes: [...graph.blobs.values()].reduce((n, d) => n + d.size, 0), fetched: fetched.fetched });
  }

  // What an earlier bundle carried.
  let carried = new Set<string>();
  if (opts.sinceIndex !== undefined) carried = carriedBy(core, checkPreviousIndex(opts.sinceIndex, 'since'), opts.onWarning);
  else if (opts.since !== undefined) carried = carriedBy(core, await readPreviousIndex(opts.since, opts.onWarning), opts.onWarning);
  const toWrite = [...blobs.values()].filter((d) => !carried.has(d.digest));
  const rows = toWrite.map((d): BlobRow => {
    const row = core.storage.blobs.lookup(d.digest);
    if (row === undefined) throw new BundleError('BUNDLE_INCOMPLETE', `blob ${d.digest} is not cached after the prefetch`, { digests: [d.digest] });
    if (row.size !== d.size) throw new BundleError('BUNDLE_INVALID', `blob ${d.digest} is ${row.size} bytes in the cache, its descriptor says ${d.size}`, { digests: [d.digest] });
    return row;
  });
  const manifestList = [...manifests.values()];
  return {
    images: exported,
    manifests: manifestList,
    blobs: rows,
    skippedBlobs: blobs.size - toWrite.length,
    index: Buffer.from(`${JSON.stringify(buildIndex(exported), null, 2)}\n`),
    bytes: manifestList.reduce((n, m) => n + m.bytes.length, 0) + rows.reduce((n, r) => n + r.size, 0),
  };
}

/** Writes the plan's layout into `sink`, manifests first, each blob streamed from its file. */
async function writeLayout(core: MirrorCore, plan: ExportPlan, sink: LayoutSink, opts: WriteOptions): Promise<void> {
  const blobsTotal = plan.manifests.length + plan.blobs.length;
  let bytesDone = 0;
  let blobsDone = 0;
  const done = (digest: string, size: number) => {
    bytesDone += size;
    blobsDone++;
    opts.onProgress?.({ event: 'blob', digest, size, blobsDone, blobsTotal, bytesDone, bytesTotal: plan.bytes });
  };
  for (const m of plan.manifests) {
    opts.signal?.throwIfAborted();
    await sink.writeBlob(m.digest.slice(7), m.bytes.length, bufferSource(m.bytes));
    done(m.digest, m.bytes.length);
  }
  for (const row of plan.blobs) {
    opts.signal?.throwIfAborted();
    await sink.writeBlob(row.digest.slice(7), row.size, () => openBlob(core, row));
    done(row.digest, row.size);
  }
  await sink.finish(plan.index);
}

/**
 * Writes the plan as a plain tar into `out` (a file, a compressor, an HTTP response) and ends
 * it. On failure `out` is destroyed, never ended: a tar cut short gets no end-of-archive blocks.
 */
export async function writeExportTar(core: MirrorCore, plan: ExportPlan, out: Writable, opts: WriteOptions = {}): Promise<void> {
  const sink = tarSink(out, plan.index);
  try {
    await writeLayout(core, plan, sink, opts);
  } catch (err) {
    await sink.abort(err as Error);
    if (!out.destroyed) out.destroy(err as Error);
    throw err;
  }
}

export async function exportBundle(core: MirrorCore, images: readonly string[], opts: ExportOptions): Promise<ExportSummary> {
  const started = performance.now();
  const isDir = opts.format === 'dir' || opts.output.endsWith('/');
  const compression: Compression = isDir ? 'none' : (opts.compress ?? compressionForName(opts.output));
  if (isDir && (opts.compress ?? 'none') !== 'none') throw new BundleError('BUNDLE_USAGE', 'a directory output cannot be compressed');
  if (isDir && opts.maxSize !== undefined) throw new BundleError('BUNDLE_USAGE', '--max-size splits a tar: it does not apply to a directory output');
  if (compression === 'zstd') assertZstdAvailable();
  if (images.length === 0) throw new BundleError('BUNDLE_USAGE', 'name at least one image to export');

  const plan = await planExport(core, images, opts);
  let files: string[];
  if (isDir) {
    await writeLayout(core, plan, await dirSink(opts.output), opts);
    files = [opts.output];
  } else {
    const out = await openOutput(opts.output, compression, opts.maxSize);
    try {
      await writeExportTar(core, plan, out.stream, opts);
    } catch (err) {
      await out.discard();
      throw err;
    }
    files = await out.complete();
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    images: plan.images.length,
    manifests: plan.manifests.length,
    blobs: plan.blobs.length,
    skippedBlobs: plan.skippedBlobs,
    bytes: plan.bytes,
    seconds,
    mibPerSecond: seconds > 0 ? plan.bytes / 1048576 / seconds : 0,
    files,
  };
}

/** The index.json of the layout: one descriptor per image, named (see bundle/layout-writer). */
function buildIndex(images: readonly ExportImage[]): unknown {
  return {
    schemaVersion: 2,
    mediaType: INDEX_MEDIA_TYPE,
    manifests: images.map((img) => ({
      mediaType: img.top.mediaType ?? declaredMediaType(img.top.bytes) ?? 'application/vnd.oci.image.manifest.v1+json',
      digest: img.top.digest,
      size: img.top.bytes.length,
      annotations: {
        [REF_NAME]: img.name,
        [CONTAINERD_NAME]: img.name,
        ...(img.platforms.length > 0 ? { [PLATFORMS_ANNOTATION]: img.platforms.join(',') } : {}),
      },
    })),
  };
}

function cachedManifest(core: MirrorCore, digest: string, mediaType: string | undefined): GraphManifest;
function cachedManifest(core: MirrorCore, digest: string, mediaType: string | undefined, optional: true): GraphManifest | undefined;
function cachedManifest(core: MirrorCore, digest: string, mediaType: string | undefined, optional = false): GraphManifest | undefined {
  const m = core.manifests.cached(digest);
  if (m === undefined) {
    if (optional) return undefined;
    throw new BundleError('BUNDLE_INCOMPLETE', `manifest ${digest} is not cached`, { digests: [digest] });
  }
  return { digest: m.digest, mediaType: m.mediaType ?? mediaType, bytes: m.bytes };
}

/** A committed blob's bytes; the reader registration keeps eviction and gc off it while it is read. */
async function openBlob(core: MirrorCore, row: { digest: string; size: number; mediaType: string | null }): Promise<Readable> {
  const opened = await core.storage.blobs.openCommitted(row);
  if (opened === undefined) throw new BundleError('BUNDLE_INCOMPLETE', `blob ${row.digest} vanished from the cache while exporting`, { digests: [row.digest] });
  const body = opened.body;
  const stream = createReadStream('', { fd: body.fd, start: 0, end: row.size - 1, autoClose: false, highWaterMark: 1 << 20 });
  // autoClose is off (the body owns the descriptor), so the end of the read, not 'close', releases it.
  finished(stream, () => void body.release());
  return stream;
}

/**
 * Blob digests an earlier bundle carried: its images walked through the manifests it names
 * (from the cache, where this mirror exported them from). An image whose manifests are no
 * longer cached cannot be walked; its blobs are then carried again, which is only larger.
 */
function carriedBy(core: MirrorCore, index: PreviousIndex, onWarning: ((m: string) => void) | undefined): Set<string> {
  const carried = new Set<string>();
  for (const d of index.manifests ?? []) {
    if (typeof d?.digest !== 'string') continue;
    const top = core.manifests.cached(d.digest);
    if (top === undefined) {
      onWarning?.(`--since: manifest ${d.digest} of the earlier bundle is no longer cached; its blobs are carried again`);
      continue;
    }
    const platforms = (d.annotations?.[PLATFORMS_ANNOTATION] ?? '').split(',').filter((p) => p !== '');
    const graph = walkImage({ digest: top.digest, mediaType: top.mediaType, bytes: top.bytes }, (c) => core.manifests.cached(c.digest)?.bytes, platforms);
    for (const b of graph.blobs.keys()) carried.add(b);
  }
  return carried;
}

export interface PreviousIndex {
  manifests?: Array<{ digest?: unknown; annotations?: Record<string, string> }>;
}

/** The index.json of an earlier bundle (the bundle, its volumes, or the index.json file), checked. */
export async function readPreviousIndex(since: string, onWarning?: ((m: string) => void) | undefined): Promise<PreviousIndex> {
  let text: Buffer | undefined;
  const stat = await fsp.stat(since).catch(() => undefined);
  if (stat?.isFile() && since.endsWith('.json') && !since.endsWith('.volumes.json')) {
    text = await fsp.readFile(since);
  } else {
    const bundle = await openBundle(since, { onWarning });
    for await (const entry of bundle.entries) {
      if (entry.kind === 'index') {
        text = await readSmall(entry, INDEX_MAX_BYTES);
        break;
      }
    }
  }
  if (text === undefined) throw new BundleError('BUNDLE_USAGE', `--since ${since}: no index.json found`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.toString('utf8'));
  } catch (err) {
    throw new BundleError('BUNDLE_USAGE', `--since ${since}: not an OCI index.json (${(err as Error).message})`, { cause: err });
  }
  return checkPreviousIndex(parsed, `--since ${since}`);
}

/** `value` as an index whose manifests can be walked; `label` names it in the message. */
export function checkPreviousIndex(value: unknown, label: string): PreviousIndex {
  const manifests = (value as PreviousIndex | null)?.manifests;
  if (value === null || typeof value !== 'object' || !Array.isArray(manifests)) {
    throw new BundleError('BUNDLE_USAGE', `${label}: not an OCI index.json (no manifests array)`);
  }
  return value as PreviousIndex;
}

export interface Output {
  stream: Writable;
  /** After the tar is finished: renames into place / writes the volume manifest; the files. */
  complete(): Promise<string[]>;
  discard(): Promise<void>;
}

/**
 * The tar's destination: `output` written as `output.part` and renamed when complete, or
 * volumes `output.000`… with `output.volumes.json` written last. Compression sits in front.
 */
export async function openOutput(output: string, compression: Compression, maxSize: number | undefined): Promise<Output> {
  await fsp.mkdir(path.dirname(path.resolve(output)), { recursive: true });
  const front = compressor(compression);
  if (maxSize !== undefined) {
    const volumes = new VolumeWriter(output, maxSize);
    const flowing = pipeline(front, volumes);
    flowing.catch(() => {});
    return {
      stream: front,
      async complete() {
        await flowing;
        const manifest = volumes.manifest(compression);
        const file = volumeManifestName(output);
        await writeVolumeManifest(file, manifest);
        return [...manifest.volumes.map((v) => path.join(path.dirname(output), v.name)), file];
      },
      async discard() {
        front.destroy();
        await flowing.catch(() => {});
        for (const f of volumes.files) await fsp.rm(f, { force: true });
      },
    };
  }
  const temp = `${output}.part`;
  const file = createWriteStream(temp);
  const flowing = pipeline(front, file);
  flowing.catch(() => {});
  return {
    stream: front,
    async complete() {
      await flowing;
      const handle = await fsp.open(temp, 'r+');
      await handle.sync();
      await handle.close();
      await fsp.rename(temp, output);
      return [output];
    },
    async discard() {
      front.destroy();
      await flowing.catch(() => {});
      await fsp.rm(temp, { force: true });
    },
  };
}
