/**
 * @module bench/scale
 * Phase 7: ocimirror over a data dir pre-populated through its own Metadata class and path layout with many
 * blobs (tiny files whose names are their real sha256) and tags (each a small OCI manifest naming two of those
 * blobs), against a nearly empty one holding only the entries the phase reads. Same reads, same paths in both:
 * start-up time (spawn → listening) and hit latency (wrk over one connection, cycling through the same paths,
 * in alternating rounds).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata } from '../src/cache/metadata/metadata.ts';
import { dataPaths } from '../src/cache/paths.ts';
import { MANIFEST_ACCEPT, MEDIA_TYPES } from '../test/helpers/images.ts';
import { startOcimirror, UPSTREAM_NAME, type OcimirrorProc } from './ocimirror.ts';
import { medianBy } from './median.ts';
import { consolePages, type ConsolePageTime } from './console.ts';
import { log, type Cleanup } from './proc.ts';
import { wrk, type WrkResult } from './wrk.ts';

export interface ScaleRun {
  blobs: number;
  tags: number;
  populateS: number;
  startupMs: number;
  /** Committed blobs ocimirror reported at start-up (its reconcile pass). */
  blobsAtStart: number;
  /** The median round (by p99) of each measure. */
  manifestByTag: WrkResult;
  blob: WrkResult;
  rounds: { manifestByTag: WrkResult[]; blob: WrkResult[] };
  /** The console's pages on this cache (bench/console). */
  console: ConsolePageTime[];
}

export interface ScaleOptions {
  upstreamUrl: string;
  workDir: string;
  hitSet: number;
  nodeArgs?: string[];
  wrk: { seconds: number; connections: number; threads: number };
  warmupSeconds: number;
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
      md.transaction(() => {
        for (let i = start; i < Math.min(blobs, start + BATCH); i++) {
          const bytes = blobBytes(i);
          const hex = hexOf(bytes);
          writeFileSync(paths.blobFile(hex), bytes);
          md.putBlob({ digest: `sha256:${hex}`, size: bytes.length, mediaType: MEDIA_TYPES.ociLayer }, { upstream: UPSTREAM_NAME, repo: repoOf(i) });
        }
      });
    }
    md.transaction(() => {
      for (let t = 0; t < tags; t++) {
        const bytes = Buffer.from(JSON.stringify({
          schemaVersion: 2,
          mediaType: MEDIA_TYPES.ociManifest,
          config: desc(2 * t, MEDIA_TYPES.ociConfig),
          layers: [desc(2 * t + 1, MEDIA_TYPES.ociLayer)],
        }, null, 3));
        md.putManifest({ digest: `sha256:${hexOf(bytes)}`, mediaType: MEDIA_TYPES.ociManifest, bytes }, { upstream: UPSTREAM_NAME, repo: repoOf(t) }, `t${t}`);
      }
    });
  } finally {
    md.close();
  }
}

interface Prepared {
  name: string;
  blobs: number;
  tags: number;
  dataDir: string;
  populateS: number;
}

function prepare(name: string, blobs: number, tags: number, workDir: string): Prepared {
  const dataDir = join(workDir, `${name}-data`);
  const t0 = performance.now();
  populate(dataDir, blobs, tags);
  const populateS = (performance.now() - t0) / 1000;
  log(`scale ${name}: ${blobs} blobs, ${tags} tags written in ${populateS.toFixed(1)} s`);
  return { name, blobs, tags, dataDir, populateS };
}

/**
 * Both caches are written first (and synced, so the kernel is not flushing 100k fresh files during
 * one side's measurement), then each mirror is started alone for its start-up time. Hits are
 * measured in `rounds` alternating rounds (empty, populated, then populated, empty, ...), both
 * mirrors running throughout, after a warm-up run each, so a slow stretch of this shared machine
 * lands on both sides; each side reports its median round.
 */
export async function scaleRuns(sizes: { empty: { blobs: number; tags: number }; populated: { blobs: number; tags: number } }, rounds: number, o: ScaleOptions, cleanup: Cleanup): Promise<{ empty: ScaleRun; populated: ScaleRun }> {
  const prepared = [prepare('scale-empty', sizes.empty.blobs, sizes.empty.tags, o.workDir), prepare('scale-populated', sizes.populated.blobs, sizes.populated.tags, o.workDir)] as const;
  execFileSync('sync');
  const mirrors: OcimirrorProc[] = [];
  try {
    for (const p of prepared) mirrors.push(await startOcimirror({ name: p.name, upstreamUrl: o.upstreamUrl, dataDir: p.dataDir, workDir: o.workDir, nodeArgs: o.nodeArgs }, cleanup));
    const n = Array.from({ length: o.hitSet }, (_, i) => i);
    const measures = {
      manifestByTag: { ...o.wrk, tmp: o.workDir, headers: { Accept: MANIFEST_ACCEPT }, paths: n.map((t) => `/v2/${repoOf(t)}/manifests/t${t}`) },
      blob: { ...o.wrk, tmp: o.workDir, paths: n.map((i) => `/v2/${repoOf(i)}/blobs/sha256:${hexOf(blobBytes(i))}`) },
    };
    const kinds = ['manifestByTag', 'blob'] as const;
    const results = prepared.map(() => ({ manifestByTag: [] as WrkResult[], blob: [] as WrkResult[] }));
    // A warm-up run of each measure on each mirror first (JIT, caches, connections), not counted:
    // the first round was the slowest of both sides in every trial run.
    for (const m of mirrors) for (const k of kinds) await wrk(m.url, { ...measures[k], seconds: o.warmupSeconds });
    for (let r = 0; r < rounds; r++) {
      for (const side of r % 2 === 0 ? [0, 1] : [1, 0]) {
        for (const k of kinds) results[side]![k].push(await wrk(mirrors[side]!.url, measures[k]));
      }
    }
    // The console's pages: registries, a search, a repository's tags and a tag of the scale fixture.
    const consolePaths = ['/console/', '/console/images', '/console/images?q=r5', `/console/images/${UPSTREAM_NAME}/scale/r0`, `/console/images/${UPSTREAM_NAME}/scale/r0/tags/t0`, '/console/jobs'];
    const consoleTimes = [await consolePages(mirrors[0]!.url, consolePaths), await consolePages(mirrors[1]!.url, consolePaths)];
    const run = (i: 0 | 1): ScaleRun => {
      const p = prepared[i];
      const m = mirrors[i]!;
      const res = results[i]!;
      return {
        blobs: p.blobs,
        tags: p.tags,
        populateS: p.populateS,
        startupMs: m.startupMs,
        blobsAtStart: Number(/"blobs":(\d+)/.exec(m.daemon.logText())?.[1] ?? NaN),
        manifestByTag: medianBy(res.manifestByTag, (w) => w.p99Ms),
        blob: medianBy(res.blob, (w) => w.p99Ms),
        rounds: { manifestByTag: res.manifestByTag, blob: res.blob },
        console: consoleTimes[i]!,
      };
    };
    return { empty: run(0), populated: run(1) };
  } finally {
    for (const m of mirrors) await m.daemon.stop();
  }
}
