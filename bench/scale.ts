/**
 * @module bench/scale
 * Phase 7: ocimirror over a data dir pre-populated through its own Metadata class and path layout with many
 * blobs (tiny files whose names are their real sha256) and tags (each a small OCI manifest naming two of those
 * blobs), against a nearly empty one holding only the entries the phase reads. Same reads, same paths in both:
 * start-up time (spawn → listening) and hit latency (wrk over one connection, cycling through the same paths).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata } from '../src/cache/metadata.ts';
import { dataPaths } from '../src/cache/paths.ts';
import { MANIFEST_ACCEPT, MEDIA_TYPES } from '../test/helpers/images.ts';
import { startOcimirror, UPSTREAM_NAME } from './ocimirror.ts';
import { log, type Cleanup } from './proc.ts';
import { wrk, type WrkResult } from './wrk.ts';

export interface ScaleRun {
  blobs: number;
  tags: number;
  populateS: number;
  startupMs: number;
  /** Committed blobs ocimirror reported at start-up (its reconcile pass). */
  blobsAtStart: number;
  manifestByTag: WrkResult;
  blob: WrkResult;
}

export interface ScaleOptions {
  upstreamUrl: string;
  workDir: string;
  hitSet: number;
  nodeArgs?: string[];
  wrk: { seconds: number; connections: number; threads: number };
}

const REPOS = 100;
const repoOf = (i: number) => `scale/r${i % REPOS}`;
const blobBytes = (i: number) => Buffer.from(`ocimirror bench blob ${i}\n`);
const hexOf = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Writes `blobs` blob files + rows and `tags` tagged manifests into `dir`, as ocimirror would have. */
function populate(dir: string, blobs: number, tags: number): void {
  const paths = dataPaths(dir);
  mkdirSync(paths.tmp, { recursive: true });
  for (let i = 0; i < 256; i++) mkdirSync(join(paths.blobsRoot, i.toString(16).padStart(2, '0')), { recursive: true });
  const md = new Metadata(paths.database);
  try {
    const desc = (i: number, mediaType: string) => {
      const b = blobBytes(i % blobs);
      return { mediaType, digest: `sha256:${hexOf(b)}`, size: b.length };
    };
    const BATCH = 10_000;
    for (let start = 0; start < blobs; start += BATCH) {
      md.db.transaction(() => {
        for (let i = start; i < Math.min(blobs, start + BATCH); i++) {
          const bytes = blobBytes(i);
          const hex = hexOf(bytes);
          writeFileSync(paths.blobFile(hex), bytes);
          md.putBlob({ digest: `sha256:${hex}`, size: bytes.length, mediaType: MEDIA_TYPES.ociLayer }, { upstream: UPSTREAM_NAME, repo: repoOf(i) });
        }
      })();
    }
    md.db.transaction(() => {
      for (let t = 0; t < tags; t++) {
        const bytes = Buffer.from(JSON.stringify({
          schemaVersion: 2,
          mediaType: MEDIA_TYPES.ociManifest,
          config: desc(2 * t, MEDIA_TYPES.ociConfig),
          layers: [desc(2 * t + 1, MEDIA_TYPES.ociLayer)],
        }, null, 3));
        md.putManifest({ digest: `sha256:${hexOf(bytes)}`, mediaType: MEDIA_TYPES.ociManifest, bytes }, { upstream: UPSTREAM_NAME, repo: repoOf(t) }, `t${t}`);
      }
    })();
  } finally {
    md.close();
  }
}

export async function scaleRun(name: string, blobs: number, tags: number, o: ScaleOptions, cleanup: Cleanup): Promise<ScaleRun> {
  const dataDir = join(o.workDir, `${name}-data`);
  const t0 = performance.now();
  populate(dataDir, blobs, tags);
  // Written back before the mirror starts: otherwise the kernel flushes 100k fresh files during the
  // populated run's measurement (and hardly anything during the empty one's).
  execFileSync('sync');
  const populateS = (performance.now() - t0) / 1000;
  log(`scale ${name}: ${blobs} blobs, ${tags} tags written in ${populateS.toFixed(1)} s`);
  const m = await startOcimirror({ name, upstreamUrl: o.upstreamUrl, dataDir, workDir: o.workDir, nodeArgs: o.nodeArgs }, cleanup);
  try {
    const blobsAtStart = Number(/"blobs":(\d+)/.exec(m.daemon.logText())?.[1] ?? NaN);
    const n = Array.from({ length: o.hitSet }, (_, i) => i);
    const manifestByTag = await wrk(m.url, { ...o.wrk, tmp: o.workDir, headers: { Accept: MANIFEST_ACCEPT }, paths: n.map((t) => `/v2/${repoOf(t)}/manifests/t${t}`) });
    const blob = await wrk(m.url, { ...o.wrk, tmp: o.workDir, paths: n.map((i) => `/v2/${repoOf(i)}/blobs/sha256:${hexOf(blobBytes(i))}`) });
    return { blobs, tags, populateS, startupMs: m.startupMs, blobsAtStart, manifestByTag, blob };
  } finally {
    await m.daemon.stop();
  }
}
