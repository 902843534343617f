/**
 * @module bench/report
 * The results of one run, the issue's targets judged against them (ratios from the same run, so machine noise
 * cancels), the side-by-side table and the JSON file.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { BundleResult, PushResult, SyncResult } from './airgap.ts';
import type { ClusterResult } from './cluster.ts';
import type { HerdResult } from './herd.ts';
import type { MachineInfo } from './machine.ts';
import type { BenchParams } from './params.ts';
import { medianBy } from './median.ts';
import type { PullResult } from './pull.ts';
import type { ReadResult } from './read.ts';
import type { ScaleRun } from './scale.ts';
import type { WrkResult } from './wrk.ts';

type Mirrors<T> = { ocimirror: T; reference: T };
/** The measured run, and the warm-up run before it (a fresh process's first seconds under load). */
export type ManifestWrk = WrkResult & { upstreamRequests: number; warmup: WrkResult };

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  params: BenchParams;
  machine: MachineInfo;
  /** 1-minute load average when the run started and ended: other work on the machine skews every number. */
  loadAvg: { start: number; end: number };
  /**
   * ocimirror's cold and warm are its median round, with every round in `rounds`; the reference's are one run.
   * ocimirror's `cold` rounds are each the first pull of a freshly started process; `coldRunning` rounds
   * pull into the running mirror after its cache was emptied through the admin API.
   */
  pull: Mirrors<{ cold: PullResult & { rounds?: PullResult[] }; warm: PullResult & { rounds?: PullResult[] } }> & {
    ocimirror: { coldRunning: PullResult & { rounds: PullResult[] } };
    images: string[];
    contentBytes: number;
    /** The same copies straight from the upstream, alternating with ocimirror's rounds: no cache, so every one is a baseline. */
    direct: PullResult[];
  };
  hitRead: Mirrors<{ one: ReadResult; many: ReadResult }> & { blobBytes: number; nginx: { one: ReadResult; many: ReadResult } };
  /** The same blob over HTTPS: ocimirror restarted with TLS on the same cache, nginx with the same certificate. */
  hitReadTls: { blobBytes: number; ocimirror: { one: ReadResult; many: ReadResult }; nginx: { one: ReadResult; many: ReadResult } };
  manifestByTag: Mirrors<ManifestWrk> & {
    upstream: WrkResult & { warmup: WrkResult };
    /** A separate ocimirror with client accounts on, every request with credentials: Basic, or a bearer token fetched once. */
    ocimirrorAuth: { basic: ManifestWrk; bearer: ManifestWrk };
  };
  herd: Mirrors<HerdResult> & { blobBytes: number };
  rss: Mirrors<{ runPeakMiB: number; herdPeakMiB: number }>;
  scale: { empty: ScaleRun; populated: ScaleRun };
  /** The large image pushed into a hosted registry, against a plain docker-registry. */
  push: PushResult;
  /** `ocimirror sync` of the pull set into an empty cache against `skopeo sync`, and a second sync of the same list. */
  sync: SyncResult;
  /** `ocimirror export` and `import` of the pull set against `skopeo copy` into oci-archives. */
  bundle: BundleResult;
  /** Replicas behind HAProxy sharing a bucket, each figure next to one node's in the same run; absent when skipped. */
  cluster?: ClusterResult;
}

export interface Target {
  id: string;
  goal: string;
  /** A ratio (ocimirror over a baseline from the same run) or an absolute value in the goal's unit. */
  value: number;
  ratio: boolean;
  met: boolean;
}

/** The baseline of the pull ratios: the median of the direct runs. */
export const directWallS = (r: BenchResults) => medianBy(r.pull.direct, (p) => p.wallS).wallS;

/** The issue's margins, each as a ratio or value from this run. */
export function judge(r: BenchResults): Target[] {
  const target = (ratio: boolean) => (id: string, goal: string, value: number, met: (v: number) => boolean): Target =>
    ({ id, goal, value, ratio, met: met(value) });
  const [ratio, abs] = [target(true), target(false)];
  const om = r.pull.ocimirror;
  const s = r.scale;
  return [
    ratio('cold.bytes', '= 1.0× content', om.cold.upstreamBytes / r.pull.contentBytes, (v) => v <= 1.01),
    ratio('cold.wall', '≤ 1.15× direct', om.cold.wallS / directWallS(r), (v) => v <= 1.15),
    ratio('cold.wallRunning', '≤ 1.15× direct', om.coldRunning.wallS / directWallS(r), (v) => v <= 1.15),
    ratio('warm.wall', '≤ 1.0× direct', om.warm.wallS / directWallS(r), (v) => v <= 1.0),
    ratio('read.one', '≥ 0.9× nginx', r.hitRead.ocimirror.one.mibPerS / r.hitRead.nginx.one.mibPerS, (v) => v >= 0.9),
    ratio('read.many', '≥ 0.9× nginx', r.hitRead.ocimirror.many.mibPerS / r.hitRead.nginx.many.mibPerS, (v) => v >= 0.9),
    ratio('readTls.one', '≥ 0.8× nginx', r.hitReadTls.ocimirror.one.mibPerS / r.hitReadTls.nginx.one.mibPerS, (v) => v >= 0.8),
    ratio('readTls.many', '≥ 0.8× nginx', r.hitReadTls.ocimirror.many.mibPerS / r.hitReadTls.nginx.many.mibPerS, (v) => v >= 0.8),
    ratio('manifest.vsReference', '≥ 20× reference', r.manifestByTag.ocimirror.requestsPerS / r.manifestByTag.reference.requestsPerS, (v) => v >= 20),
    ratio('manifest.vsUpstream', '≥ 1.0× upstream', r.manifestByTag.ocimirror.requestsPerS / r.manifestByTag.upstream.requestsPerS, (v) => v >= 1),
    abs('manifest.p99', '≤ 10 ms', r.manifestByTag.ocimirror.p99Ms, (v) => v <= 10),
    ratio('manifest.authBasic', '≥ 0.9× auth off', r.manifestByTag.ocimirrorAuth.basic.requestsPerS / r.manifestByTag.ocimirror.requestsPerS, (v) => v >= 0.9),
    ratio('manifest.authBearer', '≥ 0.9× auth off', r.manifestByTag.ocimirrorAuth.bearer.requestsPerS / r.manifestByTag.ocimirror.requestsPerS, (v) => v >= 0.9),
    abs('herd.gets', '= 1', r.herd.ocimirror.upstreamGets, (v) => v === 1),
    abs('herd.sha256', `= ${r.herd.ocimirror.clients}`, r.herd.ocimirror.sha256Ok, (v) => v === r.herd.ocimirror.clients),
    abs('herd.ttfbMedian', '≤ 0.1 s', r.herd.ocimirror.ttfbMedianS, (v) => v <= 0.1),
    abs('herd.ttfbMax', '≤ 0.5 s', r.herd.ocimirror.ttfbMaxS, (v) => v <= 0.5),
    abs('rss.herd', '≤ 150 MiB', r.rss.ocimirror.herdPeakMiB, (v) => v <= 150),
    abs('scale.startup', '≤ 2000 ms', s.populated.startupMs, (v) => v <= 2000),
    ratio('scale.manifestP99', '≤ 1.1× empty', s.populated.manifestByTag.p99Ms / s.empty.manifestByTag.p99Ms, (v) => v <= 1.1),
    ratio('scale.blobP99', '≤ 1.1× empty', s.populated.blob.p99Ms / s.empty.blob.p99Ms, (v) => v <= 1.1),
    abs('scale.consolePage', '≤ 100 ms', Math.max(...s.populated.console.map((p) => p.medianMs)), (v) => v <= 100),
    ratio('push.wall', '≤ 1.1× docker-registry', r.push.ocimirror.wallS / r.push.registry.wallS, (v) => v <= 1.1),
    ratio('sync.wall', '≤ 1.0× skopeo sync', r.sync.ocimirror.wallS / r.sync.skopeo.wallS, (v) => v <= 1.0),
    abs('sync.againRequests', `≤ ${r.sync.again.tags}`, r.sync.again.upstreamRequests, (v) => v <= r.sync.again.tags),
    abs('sync.againBlobGets', '= 0', r.sync.again.upstreamBlobGets, (v) => v === 0),
    ratio('bundle.export', '≥ 0.9× skopeo', r.bundle.export.mibPerS / r.bundle.skopeo.mibPerS, (v) => v >= 0.9),
    ratio('bundle.import', '≥ 0.9× skopeo', r.bundle.import.mibPerS / r.bundle.skopeo.mibPerS, (v) => v >= 0.9),
    ...(r.cluster ? clusterTargets(r.cluster, r.pull.contentBytes, ratio, abs) : []),
  ];
}

const f = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '—';

export function table(r: BenchResults, targets: Target[]): string {
  const byId = new Map(targets.map((x) => [x.id, x]));
  const { ocimirror: om, reference: ref } = r.pull;
  const hr = r.hitRead;
  const ht = r.hitReadTls;
  const mw = r.manifestByTag;
  const h = r.herd;
  const { empty, populated } = r.scale;
  const { push, sync, bundle } = r;
  const kMiB = (b: number) => `${f(b / 2 ** 20, 1)} MiB`;
  const rounds = (n: number) => `${n} round${n === 1 ? '' : 's'}`;
  type Row = [label: string, ocimirror: string, reference: string, baseline: string, target?: string];
  const rows: (Row | string)[] = [
    `pull of ${r.pull.images.length} images (${kMiB(r.pull.contentBytes)}), skopeo copy --all`,
    ['cold wall s, first pull after start', f(om.cold.wallS, 2), f(ref.cold.wallS, 2), `${f(directWallS(r), 2)} direct`, 'cold.wall'],
    ['cold wall s, running, cache emptied', f(om.coldRunning.wallS, 2), '', `${f(directWallS(r), 2)} direct`, 'cold.wallRunning'],
    ['  … upstream bytes × content', f(om.coldRunning.upstreamBytes / r.pull.contentBytes, 3), '', ''],
    ['cold upstream bytes × content', f(om.cold.upstreamBytes / r.pull.contentBytes, 3), f(ref.cold.upstreamBytes / r.pull.contentBytes, 3),
      `${f(r.pull.direct[0]!.upstreamBytes / r.pull.contentBytes, 3)} direct`, 'cold.bytes'],
    ['cold mirror CPU s (median round; fresh / running)', `${f(medianCpu(om.cold.rounds), 2)} / ${f(medianCpu(om.coldRunning.rounds), 2)}`, f(ref.cold.mirrorCpuS ?? Number.NaN, 2), ''],
    ['cold upstream requests', f(om.cold.upstreamRequests), f(ref.cold.upstreamRequests), `${f(r.pull.direct[0]!.upstreamRequests)} direct`],
    ['warm wall s', f(om.warm.wallS, 2), f(ref.warm.wallS, 2), `${f(directWallS(r), 2)} direct`, 'warm.wall'],
    ['warm upstream requests', f(om.warm.upstreamRequests), f(ref.warm.upstreamRequests), ''],
    `cache-hit read of ${kMiB(hr.blobBytes)}, ${hr.nginx.one.reader === 'curl' ? 'curl -o /dev/null' : 'bench/reader.mjs'}, best of ${r.params.readRepeats}`,
    ['1 client MiB/s', f(hr.ocimirror.one.mibPerS), f(hr.reference.one.mibPerS), `${f(hr.nginx.one.mibPerS)} nginx`, 'read.one'],
    [`${hr.nginx.many.clients} clients MiB/s`, f(hr.ocimirror.many.mibPerS), f(hr.reference.many.mibPerS), `${f(hr.nginx.many.mibPerS)} nginx`, 'read.many'],
    ['reader CPU, 1 client % core', f(hr.ocimirror.one.readerCpuPct), f(hr.reference.one.readerCpuPct), `${f(hr.nginx.one.readerCpuPct)} nginx`],
    `cache-hit read over TLS of ${kMiB(ht.blobBytes)}, same reader, nginx with the same certificate`,
    ['1 client MiB/s', f(ht.ocimirror.one.mibPerS), '', `${f(ht.nginx.one.mibPerS)} nginx`, 'readTls.one'],
    [`${ht.nginx.many.clients} clients MiB/s`, f(ht.ocimirror.many.mibPerS), '', `${f(ht.nginx.many.mibPerS)} nginx`, 'readTls.many'],
    ['reader CPU, 1 client % core', f(ht.ocimirror.one.readerCpuPct), '', `${f(ht.nginx.one.readerCpuPct)} nginx`],
    `manifest GET by tag within TTL, wrk -c ${r.params.wrkConnections} ${r.params.wrkSeconds}s after a ${r.params.wrkWarmupSeconds}s warm-up`,
    ['requests/s', f(mw.ocimirror.requestsPerS), f(mw.reference.requestsPerS), `${f(mw.upstream.requestsPerS)} upstream`, 'manifest.vsReference'],
    ['  … vs upstream', '', '', '', 'manifest.vsUpstream'],
    ['p50 ms', f(mw.ocimirror.p50Ms, 2), f(mw.reference.p50Ms, 2), `${f(mw.upstream.p50Ms, 2)} upstream`],
    ['p99 ms', f(mw.ocimirror.p99Ms, 2), f(mw.reference.p99Ms, 2), `${f(mw.upstream.p99Ms, 2)} upstream`, 'manifest.p99'],
    [`p99 ms in the ${r.params.wrkWarmupSeconds}s warm-up before`, f(mw.ocimirror.warmup.p99Ms, 2), f(mw.reference.warmup.p99Ms, 2), `${f(mw.upstream.warmup.p99Ms, 2)} upstream`],
    ['upstream requests / request', f(mw.ocimirror.upstreamRequests / mw.ocimirror.requests, 2), f(mw.reference.upstreamRequests / mw.reference.requests, 2), ''],
    ['auth on, Basic: requests/s', f(mw.ocimirrorAuth.basic.requestsPerS), '', '', 'manifest.authBasic'],
    ['auth on, Basic: p99 ms', f(mw.ocimirrorAuth.basic.p99Ms, 2), '', ''],
    ['auth on, bearer token: requests/s', f(mw.ocimirrorAuth.bearer.requestsPerS), '', '', 'manifest.authBearer'],
    ['auth on, bearer token: p99 ms', f(mw.ocimirrorAuth.bearer.p99Ms, 2), '', ''],
    `herd: ${h.ocimirror.clients} clients, one uncached ${kMiB(h.blobBytes)} blob`,
    ['upstream GETs', f(h.ocimirror.upstreamGets), f(h.reference.upstreamGets), '', 'herd.gets'],
    ['sha256 correct', f(h.ocimirror.sha256Ok), f(h.reference.sha256Ok), '', 'herd.sha256'],
    ['TTFB median s', f(h.ocimirror.ttfbMedianS, 3), f(h.reference.ttfbMedianS, 3), '', 'herd.ttfbMedian'],
    ['TTFB max s', f(h.ocimirror.ttfbMaxS, 3), f(h.reference.ttfbMaxS, 3), '', 'herd.ttfbMax'],
    ['wall s', f(h.ocimirror.wallS, 2), f(h.reference.wallS, 2), ''],
    'memory (VmHWM)',
    ['peak RSS through herd MiB', f(r.rss.ocimirror.herdPeakMiB), f(r.rss.reference.herdPeakMiB), '', 'rss.herd'],
    ['peak RSS over run MiB', f(r.rss.ocimirror.runPeakMiB), f(r.rss.reference.runPeakMiB), ''],
    `metadata scale (ocimirror): ${f(populated.blobs)} blobs + ${f(populated.tags)} tags vs ${f(empty.blobs)} + ${f(empty.tags)}; hits over 1 connection`,
    ['start-up ms', f(populated.startupMs), '', `${f(empty.startupMs)} empty`, 'scale.startup'],
    ['manifest hit p99 ms', f(populated.manifestByTag.p99Ms, 2), '', `${f(empty.manifestByTag.p99Ms, 2)} empty`, 'scale.manifestP99'],
    ['blob hit p99 ms', f(populated.blob.p99Ms, 2), '', `${f(empty.blob.p99Ms, 2)} empty`, 'scale.blobP99'],
    ['console page, slowest median ms', f(Math.max(...populated.console.map((p) => p.medianMs)), 1), '', `${f(Math.max(...empty.console.map((p) => p.medianMs)), 1)} empty`, 'scale.consolePage'],
    ...populated.console.map((p) => [`  … ${p.path} (HTTP ${p.status}) median / max ms`, `${f(p.medianMs, 1)} / ${f(p.maxMs, 1)}`, '', '', ''] as Row),
    `push of large:latest (${kMiB(push.imageBytes)}) into a hosted registry, skopeo copy, median of ${rounds(push.ocimirror.rounds.length)}`,
    ['push wall s', f(push.ocimirror.wallS, 2), '', `${f(push.registry.wallS, 2)} docker-registry`, 'push.wall'],
    `sync of ${sync.images} images into an empty cache, median of ${rounds(sync.ocimirror.rounds.length)}; skopeo sync --all into a directory`,
    ['sync wall s', f(sync.ocimirror.wallS, 2), '', `${f(sync.skopeo.wallS, 2)} skopeo sync`, 'sync.wall'],
    ['sync upstream bytes × content', f(sync.ocimirror.upstreamBytes / r.pull.contentBytes, 3), '', ''],
    ['sync again: wall s', f(sync.again.wallS, 2), '', ''],
    ['sync again: upstream requests', f(sync.again.upstreamRequests), '', `${f(sync.again.tags)} tags`, 'sync.againRequests'],
    ['sync again: upstream blob GETs', f(sync.again.upstreamBlobGets), '', '', 'sync.againBlobGets'],
    `bundle of the same images (${kMiB(bundle.bundleBytes)} tar), MiB/s of that size; skopeo copy --all of each to an oci-archive`,
    ['export MiB/s, from the synced cache', f(bundle.export.mibPerS), '', `${f(bundle.skopeo.mibPerS)} skopeo`, 'bundle.export'],
    ['import MiB/s, into an empty cache', f(bundle.import.mibPerS), '', `${f(bundle.skopeo.mibPerS)} skopeo`, 'bundle.import'],
    ['export / import wall s', `${f(bundle.export.wallS, 2)} / ${f(bundle.import.wallS, 2)}`, '', `${f(bundle.skopeo.wallS, 2)} skopeo`],
    ...(r.cluster ? clusterRows(r.cluster, r.pull.contentBytes) : []),
  ];
  const cells = (row: Row): string[] => {
    const t = row[4] ? byId.get(row[4]) : undefined;
    const goal = t ? `${t.ratio ? `${f(t.value, 2)}× ` : ''}${t.goal}` : '';
    return [row[0], row[1], row[2], row[3], goal, t ? (t.met ? 'met' : 'MISSED') : ''];
  };
  const header = ['', 'ocimirror', 'reference', 'nginx/upstream', 'target', ''];
  const body = rows.map((row) => (typeof row === 'string' ? row : cells(row)));
  const widths = header.map((_, i) => Math.max(header[i]!.length, ...body.filter(Array.isArray).map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 || i >= 4 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join(' │ ').trimEnd();
  const rule = widths.map((w) => '─'.repeat(w)).join('─┼─');
  const met = targets.filter((x) => x.met).length;
  return [`  ${line(header)}`, `  ${rule}`, ...body.map((row) => (typeof row === 'string' ? `▸ ${row}` : `  ${line(row)}`)), `  ${rule}`,
    `  targets met: ${met}/${targets.length}; ${r.machine.cpus} CPUs, load average ${f(r.loadAvg.start, 1)} at start, ${f(r.loadAvg.end, 1)} at end`].join('\n');
}

export async function writeJson(file: string, r: BenchResults, targets: Target[]): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify({ ...r, targets }, null, 2) + '\n');
}

type TargetOf = (id: string, goal: string, value: number, met: (v: number) => boolean) => Target;

/** Phase 11's musts: one upstream fetch per blob cluster-wide, and no upstream GET for a blob the bucket holds. */
function clusterTargets(c: ClusterResult, contentBytes: number, ratio: TargetOf, abs: TargetOf): Target[] {
  return [
    ratio('cluster.coldBytes', '= 1.0× content', c.coldPull.cluster.upstreamBytes / contentBytes, (v) => v <= 1.01),
    abs('cluster.emptyTierGets', '= 0', c.emptyTierRead.upstreamGets, (v) => v === 0),
  ];
}

/** Phase 11's rows: the cluster in the ocimirror column, the single node as the baseline; ratios without a target are informational. */
function clusterRows(c: ClusterResult, contentBytes: number): ([string, string, string, string, string?] | string)[] {
  const { coldPull: p, hitRead: h, emptyTierRead: e } = c;
  const single = (v: string) => `${v} single node`;
  const x = (a: number, b: number) => `${f(a / b, 2)}×`;
  const from = c.backend === 's3' ? 'bucket' : 'owner';
  return [
    `cluster: ${c.replicas} replicas (backend ${c.backend}) behind HAProxy (tcp, round-robin), reads of the ${f(h.blobBytes / 2 ** 20, 1)} MiB blob; baseline one fresh ocimirror`,
    ['cold pull wall s', f(p.cluster.wallS, 2), '', single(f(p.single.wallS, 2))],
    ['  … × single node', x(p.cluster.wallS, p.single.wallS), '', ''],
    ['cold upstream bytes × content', f(p.cluster.upstreamBytes / contentBytes, 3), '', single(f(p.single.upstreamBytes / contentBytes, 3)), 'cluster.coldBytes'],
    ['cold upstream requests', f(p.cluster.upstreamRequests), '', single(f(p.single.upstreamRequests))],
    ['local-tier hit, 1 client MiB/s', f(h.cluster.one.mibPerS), '', single(f(h.single.one.mibPerS))],
    [`  … ${h.single.many.clients} clients MiB/s`, f(h.cluster.many.mibPerS), '', single(f(h.single.many.mibPerS))],
    ['  … × single node (1 / N clients)', `${x(h.cluster.one.mibPerS, h.single.one.mibPerS)} / ${x(h.cluster.many.mibPerS, h.single.many.mibPerS)}`, '', ''],
    ['  … one replica, no HAProxy (1 / N clients)', `${f(h.replica.one.mibPerS)} / ${f(h.replica.many.mibPerS)}`, '', ''],
    [`empty local tier, from ${from}, 1 client MiB/s`, f(e.one.mibPerS), '', `${f(h.single.one.mibPerS)} single node hit`],
    [`  … ${e.many.clients} clients MiB/s`, f(e.many.mibPerS), '', `${f(h.single.many.mibPerS)} single node hit`],
    ['  … × single node hit (1 / N clients)', `${x(e.one.mibPerS, h.single.one.mibPerS)} / ${x(e.many.mibPerS, h.single.many.mibPerS)}`, '', ''],
    ['  … upstream GETs', f(e.upstreamGets), '', '', 'cluster.emptyTierGets'],
  ];
}

/** Median CPU-seconds of the mirror over pull rounds that measured it (NaN when none did). */
function medianCpu(rounds: readonly PullResult[] | undefined): number {
  const v = (rounds ?? []).map((p) => p.mirrorCpuS).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  return v.length === 0 ? Number.NaN : v[Math.floor(v.length / 2)]!;
}
