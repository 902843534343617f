/**
 * @module test/unit/cache/cache-fixture
 * A real cache for the references, usage, pins, eviction, image-delete and gc tests: a temp data
 * directory with a BlobStore, SQLite metadata on a clock the test moves, a BlobCache and a
 * HotCache. Blobs are committed the way fills commit them (temp file → rename → row); images
 * are stored through Metadata.putManifest with real OCI / Docker JSON referencing those blobs.
 */
import { createHash } from 'node:crypto';
import { existsSync, readSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { CommittedBody } from '../../../src/cache/blobs/blob-body.ts';
import { BlobCache } from '../../../src/cache/blobs/blob-cache.ts';
import { BlobStore } from '../../../src/cache/blobs/blob-store.ts';
import { HotCache } from '../../../src/cache/hot-cache.ts';
import { Metadata } from '../../../src/cache/metadata/metadata.ts';
import { dataPaths, type DataPaths } from '../../../src/cache/paths.ts';
import { silentLogger } from '../../../src/util/logger.ts';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const T0 = 1_700_000_000_000;

export const sha256 = (bytes: Buffer | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

export interface Where {
  upstream?: string;
  repo?: string;
  tag?: string;
}

export interface CacheFixture {
  readonly root: string;
  readonly paths: DataPaths;
  readonly store: BlobStore;
  readonly metadata: Metadata;
  readonly blobs: BlobCache;
  readonly hot: HotCache;
  readonly log: typeof silentLogger;
  now(): number;
  advance(ms: number): void;
  /** Commits a blob (file and row) of `size` bytes; distinct `name`s give distinct content. */
  blob(name: string, size?: number): Promise<string>;
  /** Stores an OCI image manifest referencing `config` and `layers`; returns its digest. */
  image(parts: { config: string; layers: string[]; subject?: string } & Where): string;
  /** Stores an OCI index over `manifests`; returns its digest. */
  index(manifests: string[], where?: Where): string;
  fileExists(digest: string): boolean;
  close(): Promise<void>;
}

export async function openCacheFixture(): Promise<CacheFixture> {
  const root = await mkdtemp(path.join(tmpdir(), 'ocimirror-cache-'));
  const paths = dataPaths(root);
  const store = new BlobStore(paths);
  await store.init();
  let now = T0;
  const metadata = new Metadata(paths.database, { flushIntervalMs: 3_600_000, now: () => now });
  const blobs = new BlobCache(store, metadata, silentLogger);
  const hot = new HotCache({ maxSize: 1 << 20 });
  const descriptor = (digest: string, mediaType: string) => ({ mediaType, digest, size: metadata.getBlob(digest)?.size ?? metadata.getManifest(digest)?.bytes.length ?? 0 });
  const store_ = (bytes: Buffer, mediaType: string, { upstream = 'hub', repo = 'library/app', tag }: Where) => {
    const digest = sha256(bytes);
    metadata.putManifest({ digest, mediaType, bytes }, { upstream, repo }, tag);
    return digest;
  };
  return {
    root,
    paths,
    store,
    metadata,
    blobs,
    hot,
    log: silentLogger,
    now: () => now,
    advance: (ms) => void (now += ms),
    async blob(name, size = 100) {
      const content = Buffer.alloc(size, name);
      content.write(name);
      const digest = sha256(content);
      const hex = digest.slice('sha256:'.length);
      const temp = store.tempPath(hex);
      await writeFile(temp, content);
      await store.commit(temp, hex);
      metadata.putBlob({ digest, size, mediaType: LAYER }, { upstream: 'hub', repo: 'library/app' });
      return digest;
    },
    image({ config, layers, subject, ...where }) {
      const doc = {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: descriptor(config, 'application/vnd.oci.image.config.v1+json'),
        layers: layers.map((l) => descriptor(l, LAYER)),
        ...(subject ? { subject: descriptor(subject, OCI_MANIFEST) } : {}),
      };
      return store_(Buffer.from(JSON.stringify(doc, null, 2)), OCI_MANIFEST, where);
    },
    index(manifests, where = {}) {
      const doc = {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: manifests.map((m, i) => ({ ...descriptor(m, OCI_MANIFEST), platform: { os: 'linux', architecture: `arch${i}` } })),
      };
      return store_(Buffer.from(JSON.stringify(doc)), OCI_INDEX, where);
    },
    fileExists: (digest) => existsSync(paths.blobFile(digest.slice('sha256:'.length))),
    async close() {
      metadata.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Every byte of a committed blob's range, read from its open file, which is then released. */
export async function readBody(body: CommittedBody): Promise<Buffer> {
  try {
    const bytes = Buffer.alloc(body.end + 1 - body.start);
    let n = 0;
    while (n < bytes.length) {
      const read = readSync(body.fd, bytes, n, bytes.length - n, body.start + n);
      if (read === 0) break;
      n += read;
    }
    return bytes.subarray(0, n);
  } finally {
    await body.release();
  }
}
