/**
 * @module bench/params
 * Every size and count of a bench run, from the environment. `BENCH_PROFILE=smoke` makes each default tiny
 * (CI proves the suite works; it measures nothing); any variable set explicitly wins over the profile.
 */
import type { Reader } from './read.ts';

export interface BenchParams {
  profile: 'full' | 'smoke';
  /** Payload of the large (and herd) layer, MiB. */
  largeMiB: number;
  /** Alternating rounds of direct and ocimirror pulls (cold, each on a fresh cache, then warm); medians count. */
  pullRounds: number;
  readClients: number;
  /** Client for hit reads: bench/reader.mjs (lean) or curl. */
  reader: Reader;
  /** Each hit read runs this many times; the best run counts. */
  readRepeats: number;
  wrkSeconds: number;
  /** A wrk run of this length before each measured one (JIT, heap, connections warm); its numbers are kept too. */
  wrkWarmupSeconds: number;
  wrkConnections: number;
  wrkThreads: number;
  herdClients: number;
  scaleBlobs: number;
  scaleTags: number;
  /** Distinct tags and blobs the scale phase reads, present in both the empty and the populated cache. */
  scaleHitSet: number;
  /** Alternating hit-latency rounds of the scale phase (empty, populated, then the other way round...); the median round counts. */
  scaleRounds: number;
  /** Alternating rounds of the push phase (ocimirror's hosted registry, a plain docker-registry); medians count. */
  pushRounds: number;
  /** Alternating rounds of the sync and bundle phases (ocimirror's CLI, skopeo); medians count. */
  syncRounds: number;
  /** Phase 11, replicas behind HAProxy against one node; BENCH_CLUSTER=0 skips it. */
  cluster: boolean;
  /** Where the replicas keep blobs: one shared bucket (Swift s3api) or each its own disk. */
  clusterBackend: 'filesystem' | 's3';
  /** Upper bound for any one command (a skopeo copy, a herd, a wrk run). */
  stepTimeoutMs: number;
  /** JSON output file; default bench/results/<timestamp>.json. */
  out: string | undefined;
  /** Run ocimirror under `node --cpu-prof`; profiles go next to the JSON. */
  cpuProf: boolean;
  /** Keep the work dir's logs (each server's log, wrk scripts) after the run; the caches are removed. */
  keepLogs: boolean;
}

export function readParams(env: NodeJS.ProcessEnv = process.env): BenchParams {
  const smoke = env.BENCH_PROFILE === 'smoke';
  if (env.BENCH_PROFILE && !['smoke', 'full'].includes(env.BENCH_PROFILE)) {
    throw new Error(`BENCH_PROFILE must be 'full' or 'smoke', got '${env.BENCH_PROFILE}'`);
  }
  const num = (names: string[], full: number, tiny: number): number => {
    const name = names.find((n) => env[n] !== undefined && env[n] !== '');
    if (!name) return smoke ? tiny : full;
    const v = Number(env[name]);
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer, got '${env[name]}'`);
    return v;
  };
  const reader = env.BENCH_READER || 'node';
  if (reader !== 'node' && reader !== 'curl') throw new Error(`BENCH_READER must be 'node' or 'curl', got '${reader}'`);
  // The full run measures replicas on the shared bucket (the deployment the phase is about); smoke runs skip starting Swift.
  const clusterBackend = env.BENCH_CLUSTER_BACKEND || (smoke ? 'filesystem' : 's3');
  if (clusterBackend !== 'filesystem' && clusterBackend !== 's3') throw new Error(`BENCH_CLUSTER_BACKEND must be 'filesystem' or 's3', got '${clusterBackend}'`);
  const scaleTags = num(['BENCH_SCALE_TAGS'], 10_000, 50);
  return {
    profile: smoke ? 'smoke' : 'full',
    largeMiB: num(['BENCH_LARGE_MIB', 'IMG_LARGE_MIB'], 512, 1),
    pullRounds: num(['BENCH_PULL_ROUNDS'], 3, 1),
    readClients: num(['BENCH_READ_CLIENTS'], 8, 8),
    reader,
    readRepeats: num(['BENCH_READ_REPEATS'], 3, 1),
    wrkSeconds: num(['BENCH_WRK_SECONDS'], 5, 1),
    wrkWarmupSeconds: num(['BENCH_WRK_WARMUP_S'], 2, 1),
    wrkConnections: num(['BENCH_WRK_CONNECTIONS'], 64, 8),
    wrkThreads: num(['BENCH_WRK_THREADS'], 1, 1),
    herdClients: num(['BENCH_HERD_CLIENTS'], 32, 4),
    scaleBlobs: num(['BENCH_SCALE_BLOBS'], 100_000, 500),
    scaleTags,
    scaleHitSet: Math.min(scaleTags, num(['BENCH_SCALE_HIT_SET'], 200, 20)),
    scaleRounds: num(['BENCH_SCALE_ROUNDS'], 9, 1),
    pushRounds: num(['BENCH_PUSH_ROUNDS'], 3, 1),
    syncRounds: num(['BENCH_SYNC_ROUNDS'], 3, 1),
    cluster: env.BENCH_CLUSTER !== '0',
    clusterBackend,
    stepTimeoutMs: num(['BENCH_STEP_TIMEOUT_S'], 600, 60) * 1000,
    out: env.BENCH_OUT || undefined,
    cpuProf: env.BENCH_CPU_PROF === '1',
    keepLogs: env.BENCH_KEEP_LOGS === '1',
  };
}
