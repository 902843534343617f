/**
 * @module bundle/bundle-import
 * `importBundle`: reads an OCI image layout (tar, gzip, zstd, volumes or a directory, see
 * bundle/layout-reader) into the data directory, in two phases:
 *
 * 1. Every blob is streamed into the blob store the way a pushed blob is
 *    (cache/uploads/upload-store `putMonolithic`: a temp file under `<data>/uploads`, hashed
 *    while written, committed only if its sha256 and size match its name). Nothing refers to
 *    these blobs yet: an import cut short leaves only verified, unreferenced blobs, which gc
 *    collects and a second run reuses.
 * 2. Once the whole archive has been read and checked — every image named, every manifest
 *    present and matching its descriptor, every config and layer in the bundle or already
 *    stored — the manifests, links and tags are written in ONE database transaction: all the
 *    bundle's images become visible together, or none does.
 *
 * Destinations: the cache (default), under each image's original registry and repository as
 * its ref.name gives it (the registry must be one a configured upstream serves), so nodes pull
 * `docker.io/library/alpine:3.19` through the mirror exactly as online; or a hosted repository
 * `REGISTRY[/PREFIX]/<repo>` (HostedContent, as a push would).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { MirrorCore } from '../core.ts';
import { RegistryError } from '../registry/errors.ts';
import { parseImageRef, type ImageRef } from '../registry/image-ref.ts';
import { declaredMediaType, MEDIA_TYPES } from '../registry/media-types.ts';
import { readManifest, type Descriptor } from '../registry/manifest.ts';
import { assertName } from '../registry/reference.ts';
import { MANIFEST_MAX_BYTES } from '../proxy/manifest-proxy.ts';
import type { Route } from '../proxy/router.ts';
import { BundleError } from './bundle-error.ts';
import { walkImage, type GraphManifest, type ImageGraph } from './bundle-graph.ts';
import { CONTAINERD_NAME, INDEX_MAX_BYTES, PLATFORMS_ANNOTATION, REF_NAME, type BundleProgress } from './bundle-export.ts';
import { openBundle, openTarStream, readSmall, type OpenedBundle } from './layout-reader.ts';

/** Labels of the upload sessions blobs pass through (only ever seen in `<data>/uploads/*\/session.json`). */
const SESSION_REGISTRY = 'ocimirror-import';
const SESSION_REPO = 'bundle';

export interface ImportOptions {
  /** 'cache' (default) or a hosted registry, optionally with a repository prefix: `registry.internal/team`. */
  dest?: string | undefined;
  /** For images whose ref.name is only a tag (`v1`): the registry/repository to put them under. */
  baseName?: string | undefined;
  onProgress?: ((p: BundleProgress) => void) | undefined;
  onWarning?: ((message: string) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface ImportedImage {
  /** The full name it was stored under (`docker.io/library/alpine:3.19`, `registry.internal/team/library/alpine:3.19`). */
  name: string;
  digest: string;
}

export interface ImportSummary {
  images: ImportedImage[];
  manifests: number;
  /** Blobs the bundle carried (verified and committed, or found already stored). */
  blobs: number;
  /** Of those, blobs that were already stored. */
  existed: number;
  /** Bytes of the input read (compressed), and of blob content verified. */
  bytesRead: number;
  bytes: number;
  seconds: number;
  mibPerSecond: number;
}

interface IndexDescriptor extends Descriptor {
  readonly annotations: Record<string, string>;
}

interface PlacedImage {
  ref: ImageRef;
  top: IndexDescriptor;
  graph: ImageGraph;
  target: { kind: 'cache'; route: Route } | { kind: 'hosted'; registry: string; repo: string };
  name: string;
}

/**
 * Imports `source`: a path (see bundle/layout-reader openBundle) or a plain tar stream (the body
 * of an admin API request), with the same checks and the same all-or-nothing publish.
 */
export async function importBundle(core: MirrorCore, source: string | Readable, opts: ImportOptions = {}): Promise<ImportSummary> {
  const started = performance.now();
  const dest = parseDest(core, opts.dest);
  let bytesRead = 0;
  const readOptions = {
    onWarning: opts.onWarning,
    onBytes: (n: number) => {
      bytesRead += n;
      opts.onProgress?.({ event: 'bytes', bytesDone: bytesRead, bytesTotal: bundle?.totalBytes });
    },
  };
  const bundle: OpenedBundle = typeof source === 'string' ? await openBundle(source, readOptions) : openTarStream(source, readOptions);

  // Phase 1: read and verify; blobs committed unreferenced.
  let layout: Buffer | undefined;
  let indexBytes: Buffer | undefined;
  const carried = new Map<string, number>();
  let existed = 0;
  let bytes = 0;
  for await (const entry of bundle.entries) {
    opts.signal?.throwIfAborted();
    if (entry.kind === 'oci-layout') layout = await readSmall(entry, 64 << 10);
    else if (entry.kind === 'index') indexBytes = await readSmall(entry, INDEX_MAX_BYTES);
    else if (entry.kind === 'blob') {
      const digest = entry.digest.value;
      let done;
      try {
        done = await core.storage.uploads.putMonolithic(SESSION_REGISTRY, SESSION_REPO, digest, entry.body, { contentLength: entry.size });
      } catch (err) {
        if (err instanceof RegistryError && (err.code === 'DIGEST_INVALID' || err.code === 'BLOB_UPLOAD_INVALID')) {
          throw new BundleError('BUNDLE_INVALID', `blob ${digest} in the bundle does not match its digest (${entry.size} bytes): the bundle is damaged or was tampered with; nothing was imported`, { digests: [digest], cause: err });
        }
        throw err;
      }
      if (done.existed) existed++;
      carried.set(digest, entry.size);
      bytes += entry.size;
      opts.onProgress?.({ event: 'blob', digest, size: entry.size, blobsDone: carried.size, blobsTotal: 0, bytesDone: bytes, bytesTotal: 0 });
    }
  }
  if (layout === undefined) throw new BundleError('BUNDLE_INVALID', 'the bundle has no oci-layout file: it is not an OCI image layout');
  checkLayout(layout);
  if (indexBytes === undefined) throw new BundleError('BUNDLE_INVALID', 'the bundle has no index.json: it names no images');
  const tops = parseIndex(indexBytes);

  // Phase 2a: the graph of every image, all content present and consistent.
  const manifestBytes = (d: Descriptor): Buffer | undefined => readManifestBytes(core, d, carried);
  const placed: PlacedImage[] = [];
  const missing = new Set<string>();
  for (const top of tops) {
    const bytesOfTop = manifestBytes(top);
    if (bytesOfTop === undefined) {
      throw new BundleError('BUNDLE_INVALID', `index.json names manifest ${top.digest}, which is not in the bundle: nothing was imported`, { digests: [top.digest] });
    }
    const platforms = (top.annotations[PLATFORMS_ANNOTATION] ?? '').split(',').filter((p) => p !== '');
    const graph = walkImage({ digest: top.digest, mediaType: top.mediaType, bytes: bytesOfTop }, manifestBytes, platforms);
    // Without a recorded platform filter, an index entry that is absent is damage, not a choice.
    for (const d of graph.missingManifests) missing.add(d.digest);
    for (const d of graph.blobs.values()) {
      const size = carried.get(d.digest) ?? (await storedSize(core, d.digest));
      if (size === undefined) missing.add(d.digest);
      else if (size !== d.size) {
        throw new BundleError('BUNDLE_INVALID', `blob ${d.digest} is ${size} bytes, its descriptor says ${d.size}: nothing was imported`, { digests: [d.digest] });
      }
    }
    const ref = imageName(top, opts.baseName);
    placed.push({ ref, top, graph, target: place(core, dest, ref), name: '' });
  }
  if (missing.size > 0) {
    const list = [...missing];
    throw new BundleError(
      'BUNDLE_INCOMPLETE',
      `the bundle refers to ${list.length} blob(s) or manifest(s) that are neither in it nor already stored: ${list.join(', ')}. ` +
        'If it is a differential bundle (export --since), import the bundle it was made against first; nothing was imported',
      { digests: list },
    );
  }

  // Phase 2b: everything visible at once.
  const metadata = core.storage.metadata;
  try {
    metadata.transaction(() => {
      for (const img of placed) img.name = commitImage(core, img);
    });
  } catch (err) {
    if (err instanceof RegistryError) {
      throw new BundleError('BUNDLE_REFUSED', `the destination refused the bundle: ${err.message}; nothing was imported`, { cause: err });
    }
    throw err;
  }
  for (const img of placed) if (img.target.kind === 'cache') warmHot(core, img);
  const seconds = (performance.now() - started) / 1000;
  const manifests = new Set(placed.flatMap((p) => p.graph.manifests.map((m) => m.digest))).size;
  return {
    images: placed.map((p) => ({ name: p.name, digest: p.top.digest })),
    manifests,
    blobs: carried.size,
    existed,
    bytesRead,
    bytes,
    seconds,
    mibPerSecond: seconds > 0 ? bytes / 1048576 / seconds : 0,
  };
}

type Dest = { kind: 'cache' } | { kind: 'hosted'; registry: string; prefix: string | undefined };

function parseDest(core: MirrorCore, dest: string | undefined): Dest {
  if (dest === undefined || dest === 'cache') return { kind: 'cache' };
  const slash = dest.indexOf('/');
  const registry = (slash === -1 ? dest : dest.slice(0, slash)).toLowerCase();
  const prefix = slash === -1 ? undefined : dest.slice(slash + 1).replace(/\/+$/, '');
  if (!core.config.hosted.some((h) => h.name.toLowerCase() === registry)) {
    throw new BundleError('BUNDLE_USAGE', `--dest ${dest}: '${registry}' is not a hosted registry of this mirror (hosted: ${core.config.hosted.map((h) => h.name).join(', ') || 'none'}); use --dest cache or a hosted registry's name`);
  }
  if (prefix !== undefined && prefix !== '') assertName(prefix);
  return { kind: 'hosted', registry, prefix: prefix === '' ? undefined : prefix };
}

function checkLayout(bytes: Buffer): void {
  let version: unknown;
  try {
    version = (JSON.parse(bytes.toString('utf8')) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
  } catch {
    version = undefined;
  }
  if (typeof version !== 'string' || !/^1\.\d+\.\d+$/.test(version)) {
    throw new BundleError('BUNDLE_INVALID', `oci-layout gives imageLayoutVersion ${JSON.stringify(version)}; only 1.x layouts are read`);
  }
}

function parseIndex(bytes: Buffer): IndexDescriptor[] {
  let doc: { schemaVersion?: unknown; manifests?: unknown };
  try {
    doc = JSON.parse(bytes.toString('utf8')) as typeof doc;
  } catch (err) {
    throw new BundleError('BUNDLE_INVALID', `index.json is not JSON: ${(err as Error).message}`);
  }
  if (doc?.schemaVersion !== 2 || !Array.isArray(doc.manifests)) throw new BundleError('BUNDLE_INVALID', 'index.json is not an image index (schemaVersion 2 with a manifests array)');
  if (doc.manifests.length === 0) throw new BundleError('BUNDLE_INVALID', 'index.json names no images');
  return doc.manifests.map((m: unknown, i: number) => {
    const d = m as { digest?: unknown; size?: unknown; mediaType?: unknown; annotations?: unknown };
    if (typeof d?.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d.digest) || typeof d.size !== 'number') {
      throw new BundleError('BUNDLE_INVALID', `index.json entry ${i} has no valid sha256 digest and size`);
    }
    const annotations = d.annotations && typeof d.annotations === 'object' ? (d.annotations as Record<string, string>) : {};
    return { digest: d.digest, size: d.size, mediaType: typeof d.mediaType === 'string' ? d.mediaType : undefined, annotations };
  });
}

/**
 * A manifest's bytes: from the bundle (a verified blob just committed) or, for a differential
 * bundle, from the manifests already stored. Its size must match the descriptor's.
 */
function readManifestBytes(core: MirrorCore, d: Descriptor, carried: Map<string, number>): Buffer | undefined {
  let bytes: Buffer | undefined;
  const size = carried.get(d.digest);
  if (size !== undefined) {
    if (size > MANIFEST_MAX_BYTES) throw new BundleError('BUNDLE_INVALID', `manifest ${d.digest} is ${size} bytes, more than the ${MANIFEST_MAX_BYTES} a manifest may have`, { digests: [d.digest] });
    bytes = readFileSyncSafe(core.storage.paths.blobFile(d.digest.slice(7)));
    // The file was verified when committed; checked again because it is about to become a manifest row.
    if (bytes !== undefined && `sha256:${createHash('sha256').update(bytes).digest('hex')}` !== d.digest) bytes = undefined;
  }
  bytes ??= core.storage.metadata.getManifest(d.digest)?.bytes;
  if (bytes !== undefined && d.size !== bytes.length) {
    throw new BundleError('BUNDLE_INVALID', `manifest ${d.digest} is ${bytes.length} bytes, its descriptor says ${d.size}`, { digests: [d.digest] });
  }
  return bytes;
}

function readFileSyncSafe(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

async function storedSize(core: MirrorCore, digest: string): Promise<number | undefined> {
  const row = core.storage.blobs.lookup(digest);
  if (row === undefined) return undefined;
  try {
    const st = await fsp.stat(core.storage.paths.blobFile(digest.slice(7)));
    return st.size === row.size ? row.size : undefined;
  } catch {
    return undefined;
  }
}

/** The image's original name: io.containerd.image.name, else ref.name (a bare tag needs --base-name). */
function imageName(top: IndexDescriptor, baseName: string | undefined): ImageRef {
  const text = top.annotations[CONTAINERD_NAME] ?? top.annotations[REF_NAME];
  if (text === undefined || text === '') {
    if (baseName === undefined) throw new BundleError('BUNDLE_USAGE', `index.json entry ${top.digest} has no ${REF_NAME} annotation: give --base-name REGISTRY/REPO to import it by digest`);
    return parseImageRef(`${baseName}@${top.digest}`);
  }
  const full = text.includes('/') || text.includes('@') || /^[^:]+:[^:]+$/.test(text);
  try {
    if (full && !(baseName !== undefined && !text.includes('/'))) return parseImageRef(text);
    if (baseName === undefined) {
      throw new BundleError('BUNDLE_USAGE', `index.json names an image only by '${text}', not by its registry and repository: give --base-name REGISTRY/REPO (the tag '${text}' is kept)`);
    }
    return parseImageRef(`${baseName}:${text}`);
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throw new BundleError('BUNDLE_INVALID', `index.json names an image '${text.slice(0, 200)}', which is not an image reference: ${(err as Error).message}`, { cause: err });
  }
}

function place(core: MirrorCore, dest: Dest, ref: ImageRef): PlacedImage['target'] {
  if (dest.kind === 'hosted') {
    const repo = dest.prefix === undefined ? ref.repo : `${dest.prefix}/${ref.repo}`;
    return { kind: 'hosted', registry: dest.registry, repo: assertName(repo) };
  }
  try {
    return { kind: 'cache', route: core.router.resolve(`${ref.registry}/${ref.repo}`) };
  } catch (err) {
    throw new BundleError('BUNDLE_REFUSED', `${ref.registry}/${ref.repo}: no configured upstream serves registry '${ref.registry}', so its images cannot go into the cache (configure an upstream for it, or use --dest with a hosted registry); nothing was imported`, { cause: err });
  }
}

function mediaTypeOf(m: GraphManifest): string {
  const declared = m.mediaType ?? declaredMediaType(m.bytes);
  if (declared !== undefined) return declared;
  return readManifest(m.bytes).kind === 'index' ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest;
}

/** Writes one image's manifests, links and tag (inside the caller's transaction); returns the name it is under. */
function commitImage(core: MirrorCore, img: PlacedImage): string {
  const reference = img.ref.tag;
  if (img.ref.digest !== undefined && img.ref.digest !== img.top.digest) {
    throw new BundleError('BUNDLE_INVALID', `index.json names ${img.top.digest} as ${img.ref.registry}/${img.ref.repo}@${img.ref.digest}`, { digests: [img.top.digest] });
  }
  if (img.target.kind === 'cache') {
    const { route } = img.target;
    const link = { upstream: route.upstream.name, repo: route.repo };
    const metadata = core.storage.metadata;
    for (const digest of img.graph.blobs.keys()) metadata.putLink(link.upstream, link.repo, digest);
    for (const m of img.graph.manifests) {
      const isTop = m.digest === img.top.digest;
      metadata.putManifest({ digest: m.digest, mediaType: mediaTypeOf(m), bytes: m.bytes }, link, isTop ? reference : undefined);
    }
    return `${img.ref.registry}/${img.ref.repo}${reference !== undefined ? `:${reference}` : `@${img.top.digest}`}`;
  }
  const { registry, repo } = img.target;
  const hosted = core.hosted.content;
  for (const digest of img.graph.blobs.keys()) hosted.linkBlob(registry, repo, digest);
  for (const m of img.graph.manifests) {
    const isTop = m.digest === img.top.digest;
    hosted.putManifest(registry, repo, isTop && reference !== undefined ? reference : m.digest, mediaTypeOf(m), m.bytes);
  }
  return `${registry}/${repo}${reference !== undefined ? `:${reference}` : `@${img.top.digest}`}`;
}

/** What ManifestProxy keeps in memory after storing a fetched manifest, so a running mirror answers from memory at once. */
function warmHot(core: MirrorCore, img: PlacedImage): void {
  if (img.target.kind !== 'cache') return;
  const { upstream, repo } = img.target.route;
  const hot = core.storage.hot;
  const now = core.storage.metadata.now();
  for (const m of img.graph.manifests) {
    hot.setManifest({ digest: m.digest, mediaType: mediaTypeOf(m), bytes: m.bytes });
    hot.setLink(upstream.name, repo, m.digest);
  }
  for (const digest of img.graph.blobs.keys()) hot.setLink(upstream.name, repo, digest);
  const tag = img.ref.tag;
  if (tag !== undefined) {
    hot.setTag(upstream.name, repo, tag, { digest: img.top.digest, mediaType: mediaTypeOf(img.graph.manifests.at(-1) as GraphManifest), fetchedAt: now });
  }
}
