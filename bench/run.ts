/**
 * @module bench/run
 * `npm run bench`: ocimirror side by side with the reference pull-through cache (docker-registry in proxy
 * mode), nginx (sendfile) as the ceiling for reads and the upstream itself, all started here on loopback and
 * stopped here, also on failure and on SIGINT/SIGTERM. Prints one table; writes JSON to bench/results/.
 * Sizes and counts: bench/params.ts (BENCH_PROFILE=smoke for a tiny run).
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MANIFEST_ACCEPT } from '../test/helpers/images.ts';
import { startRegistry } from '../test/helpers/registry-server.ts';
import { bundlePhase, pushPhase, syncPhase, type AirgapOptions } from './airgap.ts';
import { clusterPhase } from './cluster.ts';
import { startAuthMirror } from './auth-mirror.ts';
import { herd } from './herd.ts';
import { machineInfo } from './machine.ts';
import { startNginx, startNginxTls } from './nginx.ts';
import { startOcimirror, type OcimirrorProc } from './ocimirror.ts';
import { readParams } from './params.ts';
import { Cleanup, killRunning, log } from './proc.ts';
import { emptyCache } from './empty-cache.ts';
import { medianBy } from './median.ts';
import { pullSet, type PullResult } from './pull.ts';
import { readThroughput } from './read.ts';
import { judge, table, writeJson, type BenchResults } from './report.ts';
import { PeakRss, pidWithArg } from './rss.ts';
import { scaleRuns } from './scale.ts';
import { makeBenchCert } from './tls-cert.ts';
import { PULL_SET, settled, startUpstream } from './upstream.ts';
import { wrk } from './wrk.ts';

const RESULTS_DIR = fileURLToPath(new URL('results/', import.meta.url));

async function main(cleanup: Cleanup): Promise<void> {
  const params = readParams();
  const startedAt = new Date();
  const loadAtStart = loadavg()[0]!;
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const outFile = params.out ?? join(RESULTS_DIR, `${stamp}.json`);
  const timeoutMs = params.stepTimeoutMs;
  log(`profile ${params.profile}: ${JSON.stringify(params)}`);

  const work = await mkdtemp(join(tmpdir(), 'ocimirror-bench-'));
  cleanup.defer('work dir', async () => {
    if (!params.keepLogs) return rm(work, { recursive: true, force: true });
    for (const entry of await readdir(work)) if (entry.endsWith('-data')) await rm(join(work, entry), { recursive: true, force: true });
    log(`logs kept in ${work}`);
  });
  const machine = await machineInfo();

  log(`fixtures (${params.largeMiB} MiB large + herd layers) → upstream`);
  const up = await startUpstream(params.largeMiB, cleanup);
  const upstream = up.log;
  const nginx = await startNginx(join(up.fixtures.dir, 'blobs'), work, cleanup);
  const refStarting = startRegistry({ proxy: { remoteurl: upstream.url } });
  cleanup.defer('reference', async () => (await refStarting).stop());
  const reference = await refStarting;
  // Profiles are named CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile: the largest of a pid is its main thread.
  const nodeArgs = params.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', join(dirname(outFile), `${stamp}-cpuprofile`)] : [];
  const startMirror = (name: string) => startOcimirror({ name, upstreamUrl: upstream.url, dataDir: join(work, `${name}-data`), workDir: work, nodeArgs }, cleanup);
  log(`upstream ${upstream.url}; reference ${reference.url}; nginx ${nginx.url}`);

  // 1 + 2: pulls, in rounds that alternate with the direct baseline (no cache, so every direct run
  // counts), so that a slow stretch of this shared machine lands on both sides of a ratio; each side
  // reports its median. Every cold round runs on a freshly started ocimirror with an empty cache;
  // the last one stays up for the phases after. The reference is pulled once, cold then warm.
  const pull = (host: string, what: string, pid?: number) => (log(`pull: ${what}`), pullSet(host, PULL_SET, upstream, work, timeoutMs, pid));
  const direct: PullResult[] = [];
  const coldRounds: PullResult[] = [];
  // One round first that is not counted, both sides: the machine's first use in a run of that much
  // fresh page cache and memory made the first round the slowest on both sides, which later rounds never pay.
  const stopAndEmpty = async (m: OcimirrorProc) => {
    await m.daemon.stop();
    await rm(m.dataDir, { recursive: true, force: true });
  };
  await pull(upstream.host, 'direct (warm-up round, not counted)');
  const warmup = await startMirror('ocimirror-warmup');
  await pull(warmup.host, 'ocimirror cold (warm-up round, not counted)');
  await stopAndEmpty(warmup);
  let om: OcimirrorProc | undefined;
  for (let r = 1; r <= params.pullRounds; r++) {
    direct.push(await pull(upstream.host, `direct (${r}/${params.pullRounds})`));
    if (om) await stopAndEmpty(om);
    om = await startMirror(r === params.pullRounds ? 'ocimirror' : `ocimirror-cold${r}`);
    coldRounds.push(await pull(om.host, `ocimirror cold (${r}/${params.pullRounds})`, om.pid));
  }
  if (!om) throw new Error('BENCH_PULL_ROUNDS must be at least 1');
  log(`ocimirror ${om.url} (pid ${om.pid}) stays up for the phases after the pulls`);
  const referencePid = pidWithArg(join(reference.dir, 'config.yml'));
  const rss = { ocimirror: new PeakRss(om.pid), reference: new PeakRss(referencePid) };
  const refCold = await pull(reference.host, 'reference cold', referencePid);
  const warmRounds: PullResult[] = [];
  for (let r = 1; r <= params.pullRounds; r++) {
    warmRounds.push(await pull(om.host, `ocimirror warm (${r}/${params.pullRounds})`));
    direct.push(await pull(upstream.host, `direct (${params.pullRounds + r}/${2 * params.pullRounds})`));
  }
  const refWarm = await pull(reference.host, 'reference warm');
  // 1 again, on the running mirror: its cache emptied through its own admin API (deletion jobs), so
  // the pull is cold while the process has served before, as a long-running mirror meets a new image.
  // The rounds above measure the other case, the first pull after a start (code not yet optimised).
  const runningRounds: PullResult[] = [];
  for (let r = 1; r <= params.pullRounds; r++) {
    log(`emptying ocimirror's cache through its admin API (${r}/${params.pullRounds})`);
    await emptyCache(om, PULL_SET, timeoutMs);
    runningRounds.push(await pull(om.host, `ocimirror cold, running (${r}/${params.pullRounds})`, om.pid));
    direct.push(await pull(upstream.host, `direct (${2 * params.pullRounds + r}/${3 * params.pullRounds})`));
  }
  const omCold = { ...medianBy(coldRounds, (p) => p.wallS), rounds: coldRounds };
  const omWarm = { ...medianBy(warmRounds, (p) => p.wallS), rounds: warmRounds };
  const omColdRunning = { ...medianBy(runningRounds, (p) => p.wallS), rounds: runningRounds };

  // 3: cache-hit reads of the large blob.
  const blobPath = `/v2/large/blobs/${up.large.digest}`;
  const reads = async (base: string, what: string, caFile?: string) => {
    log(`hit read: ${what}`);
    const one = await readThroughput(base + blobPath, up.large.size, 1, params.readRepeats, params.reader, timeoutMs, caFile);
    const many = await readThroughput(base + blobPath, up.large.size, params.readClients, params.readRepeats, params.reader, timeoutMs, caFile);
    return { one, many };
  };
  upstream.reset();
  const hitRead = { blobBytes: up.large.size, nginx: await reads(nginx.url, 'nginx'), ocimirror: await reads(om.url, 'ocimirror'), reference: await reads(reference.url, 'reference') };
  const missed = upstream.count({ pathIncludes: up.large.digest });
  if (missed > 0) log(`warning: cache-hit reads reached the upstream ${missed} times`);

  // 4: manifest by tag within its TTL (the pulls above cached small:latest).
  const wrkOpts = { seconds: params.wrkSeconds, connections: params.wrkConnections, threads: params.wrkThreads, headers: { Accept: MANIFEST_ACCEPT }, tmp: work };
  const manifestPath = '/v2/small/manifests/latest';
  // Each server gets a warm-up run first and is measured on the second: steady state, the way
  // wrk numbers are usually taken. The warm-up's numbers are kept (`warmup`): its p99 is what a
  // freshly started process shows in its first seconds of load.
  const warmOpts = { ...wrkOpts, seconds: params.wrkWarmupSeconds };
  const mirrorWrk = async (base: string, what: string, authorization?: string) => {
    log(`manifest by tag: ${what}`);
    const headers = { ...wrkOpts.headers, ...(authorization ? { Authorization: authorization } : {}) };
    const warmup = await wrk(base + manifestPath, { ...warmOpts, headers });
    await settled(upstream);
    upstream.reset();
    const result = await wrk(base + manifestPath, { ...wrkOpts, headers });
    await settled(upstream);
    return { ...result, upstreamRequests: upstream.count(), warmup };
  };
  const upstreamWrk = async () => {
    log('manifest by tag: upstream');
    const warmup = await wrk(up.registry.url + manifestPath, warmOpts);
    return { ...(await wrk(up.registry.url + manifestPath, wrkOpts)), warmup };
  };
  // The same on a mirror with client accounts on, each request carrying credentials: Basic, then a
  // bearer token fetched once. Started here with its own cache and stopped after the phase.
  const authMirror = await startAuthMirror({ upstreamUrl: upstream.url, workDir: work, nodeArgs, manifestPath }, cleanup);
  await settled(upstream);
  const manifestByTag = {
    ocimirror: await mirrorWrk(om.url, 'ocimirror'),
    ocimirrorAuth: {
      basic: await mirrorWrk(authMirror.om.url, 'ocimirror, auth on, Basic', authMirror.basic),
      bearer: await mirrorWrk(authMirror.om.url, 'ocimirror, auth on, bearer token', authMirror.bearer),
    },
    reference: await mirrorWrk(reference.url, 'reference'),
    upstream: await upstreamWrk(),
  };
  await authMirror.om.daemon.stop();

  // 5 + 6: the herd, with each mirror's peak RSS through it.
  const herdPath = `/v2/${up.herd.repo}/blobs/${up.herd.digest}`;
  const herdOf = (base: string, what: 'ocimirror' | 'reference') => {
    log(`herd: ${what}, ${params.herdClients} clients`);
    return rss[what].during(() => herd(base + herdPath, up.herd.digest, params.herdClients, upstream, timeoutMs));
  };
  const herdOm = await herdOf(om.url, 'ocimirror');
  const herdRef = await herdOf(reference.url, 'reference');
  const rssResult = {
    ocimirror: { runPeakMiB: rss.ocimirror.runPeakMiB(), herdPeakMiB: herdOm.peakMiB },
    reference: { runPeakMiB: rss.reference.runPeakMiB(), herdPeakMiB: herdRef.peakMiB },
  };
  await om.daemon.stop(); // writes the CPU profile, frees the cores for phase 3 over TLS and phase 7
  await reference.stop();

  // 3 over HTTPS: ocimirror restarted with TLS on the same cache, so the large blob is still a hit, against
  // nginx serving the same files with the same certificate. Run alone, as the plain reads were.
  const cert = await makeBenchCert(work);
  const nginxTls = await startNginxTls(join(up.fixtures.dir, 'blobs'), cert, work, cleanup);
  const omTls = await startOcimirror({ name: 'ocimirror-tls', upstreamUrl: upstream.url, dataDir: om.dataDir, workDir: work, nodeArgs, tls: cert }, cleanup);
  upstream.reset();
  const hitReadTls = { blobBytes: up.large.size, nginx: await reads(nginxTls.url, 'nginx over TLS', cert.ca), ocimirror: await reads(omTls.url, 'ocimirror over TLS', cert.ca) };
  const missedTls = upstream.count({ pathIncludes: up.large.digest });
  if (missedTls > 0) log(`warning: cache-hit reads over TLS reached the upstream ${missedTls} times`);
  await omTls.daemon.stop();
  await nginxTls.daemon.stop();

  // 7: metadata scale.
  // One connection: hit latency as a lookup costs it, not queueing behind 63 other requests.
  const scaleOpts = { upstreamUrl: upstream.url, workDir: work, hitSet: params.scaleHitSet, nodeArgs, wrk: { seconds: params.wrkSeconds, connections: 1, threads: 1 }, warmupSeconds: params.wrkWarmupSeconds };
  const { empty, populated } = await scaleRuns(
    { empty: { blobs: 2 * params.scaleHitSet, tags: params.scaleHitSet }, populated: { blobs: params.scaleBlobs, tags: params.scaleTags } },
    params.scaleRounds,
    scaleOpts,
    cleanup,
  );

  // 8–10: the air-gapped features, each against the tool a site would otherwise use.
  const airgap: AirgapOptions = { up, images: PULL_SET, workDir: work, rounds: { push: params.pushRounds, sync: params.syncRounds }, timeoutMs, nodeArgs };
  const push = await pushPhase(airgap, cleanup);
  const sync = await syncPhase(airgap);
  const bundle = await bundlePhase(airgap, sync.config);

  // 11: three replicas behind HAProxy, sharing a bucket, against one node.
  const read = { clients: params.readClients, repeats: params.readRepeats, reader: params.reader };
  const cluster = params.cluster
    ? await clusterPhase({ up, images: PULL_SET, workDir: work, backend: params.clusterBackend, replicas: 3, read, timeoutMs, nodeArgs }, cleanup)
    : undefined;

  const results: BenchResults = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    params,
    machine,
    loadAvg: { start: loadAtStart, end: loadavg()[0]! },
    pull: { images: PULL_SET, contentBytes: up.contentBytes, direct, ocimirror: { cold: omCold, warm: omWarm, coldRunning: omColdRunning }, reference: { cold: refCold, warm: refWarm } },
    hitRead,
    hitReadTls,
    manifestByTag,
    herd: { blobBytes: up.herd.size, ocimirror: herdOm.result, reference: herdRef.result },
    rss: rssResult,
    scale: { empty, populated },
    push,
    sync: sync.result,
    bundle,
    ...(cluster ? { cluster } : {}),
  };
  const targets = judge(results);
  await writeJson(outFile, results, targets);
  process.stdout.write(`\n${table(results, targets)}\n\nresults: ${outFile}\n`);
}

const cleanup = new Cleanup();
let stopping = false;
/** A signal, or an error nothing awaited: stop everything started, then exit. */
const abort = (why: string, code: number) => {
  if (stopping) return;
  stopping = true;
  log(`${why}: stopping everything`);
  killRunning();
  void cleanup.run().finally(() => process.exit(code));
};
process.on('SIGINT', () => abort('SIGINT', 130));
process.on('SIGTERM', () => abort('SIGTERM', 143));
process.on('unhandledRejection', (err) => abort(`unhandled ${(err as Error)?.stack ?? err}`, 1));

try {
  await main(cleanup);
} catch (err) {
  process.exitCode = 1;
  log(`failed: ${(err as Error).stack ?? err}`);
} finally {
  killRunning();
  await cleanup.run();
}
