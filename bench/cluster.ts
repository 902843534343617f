/**
 * @module bench/cluster
 * Phase 11, replicas against one node: three `ocimirror serve` (the built CLI) that know each other and share
 * one bucket (OpenStack Swift's s3api, `backend: s3`; or each its own disk, `backend: filesystem`), behind a
 * real HAProxy in mode tcp, round-robin, as an L4 switch would spread clients. Each figure is taken next to the
 * same figure on one freshly started single node in the same run: the cold pull of the set (wall; upstream
 * bytes over content, where one fetch per blob cluster-wide means 1.00), hit reads of the large blob from the
 * replicas' local tiers, and reads by a replica whose local tier is empty (restarted on a new data dir), which
 * must come from the bucket (or, on the filesystem backend, from the owner replica) and never the upstream.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { owner } from '../src/cluster/rendezvous.ts';
import { startHaproxy } from '../test/helpers/haproxy.ts';
import { freePort } from '../test/helpers/ports.ts';
import { startS3Server, type S3Server } from '../test/helpers/s3-server.ts';
import { BENCH_ADMIN_TOKEN, ocimirrorCli, startOcimirror, writeOcimirrorConfig } from './ocimirror.ts';
import { log, startDaemon, waitFor, type Cleanup, type Daemon } from './proc.ts';
import { pullSet, type PullResult } from './pull.ts';
import { readThroughput, type Reader, type ReadResult } from './read.ts';
import { settled, type BenchUpstream } from './upstream.ts';

export type ClusterBackend = 'filesystem' | 's3';

export interface ClusterOptions {
  up: BenchUpstream;
  images: string[];
  workDir: string;
  backend: ClusterBackend;
  replicas: number;
  read: { clients: number; repeats: number; reader: Reader };
  timeoutMs: number;
  nodeArgs: string[];
}

export interface ClusterReads {
  one: ReadResult;
  many: ReadResult;
}

export interface ClusterResult {
  backend: ClusterBackend;
  replicas: number;
  /** The same `skopeo copy --all` of the set: through HAProxy to the replicas, and to one fresh node. */
  coldPull: { cluster: PullResult; single: PullResult };
  /**
   * The large blob, every replica holding it on its local disk, read through HAProxy; then from one replica
   * straight (`replica`); the single node's own hit reads.
   */
  hitRead: { blobBytes: number; cluster: ClusterReads & { upstreamGets: number }; single: ClusterReads; replica: ClusterReads };
  /**
   * The large blob read straight from a replica restarted on an empty data dir, before each side (1 client,
   * then N): one run each, since the first read fills the local tier. Compared with the single node's local hits.
   */
  emptyTierRead: ClusterReads & { upstreamGets: number };
}

/** At least 32 characters (the schema's floor for the secret that opens the peers' internal API). */
const CLUSTER_SECRET = 'bench-cluster-secret-not-secret-0123456789';
const SECRET_ENV = 'OCIMIRROR_CLUSTER_SECRET';
const MEMBERS_UP_MS = 30_000;

interface Replica {
  url: string;
  port: number;
  daemon: Daemon;
}

/** Environment every replica runs with: the shared secret, and the bucket's keys under AWS's own names. */
function replicaEnv(s3: S3Server | undefined): NodeJS.ProcessEnv {
  return { [SECRET_ENV]: CLUSTER_SECRET, ...(s3 ? { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey } : {}) };
}

/** The storage block: a local dir alone, or that dir as a 2 GiB cache in front of the shared bucket. */
function storageOf(dataDir: string, s3: S3Server | undefined): object {
  if (!s3) return { path: dataDir };
  return {
    path: dataDir,
    backend: 's3',
    localCache: { maxSize: '2GiB' },
    s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, prefix: 'bench/', forcePathStyle: true, accessKeyIdEnv: 'AWS_ACCESS_KEY_ID', secretAccessKeyEnv: 'AWS_SECRET_ACCESS_KEY' },
  };
}

/**
 * Starts replica `i` listening on its fixed port (its `cluster.self`, which the others list), with the
 * bench's usual mirror config plus the cluster's keys; resolves once it logs that it listens.
 */
async function startReplica(i: number, gen: number, ports: number[], o: ClusterOptions, s3: S3Server | undefined, cleanup: Cleanup): Promise<Replica> {
  const name = `cluster-r${i}-${gen}`;
  const dataDir = join(o.workDir, `${name}-data`);
  const file = await writeOcimirrorConfig({ name, upstreamUrl: o.up.registry.url, dataDir, workDir: o.workDir });
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  await writeFile(file, JSON.stringify({
    ...config,
    listen: `127.0.0.1:${ports[i]}`,
    storage: storageOf(dataDir, s3),
    cluster: { self: urls[i], peers: urls, secretEnv: SECRET_ENV, healthInterval: '1s' },
  }, null, 2));
  const logFile = join(o.workDir, `${name}.log`);
  const [cmd, argv] = ocimirrorCli(['serve', '--config', file], o.nodeArgs);
  const daemon = startDaemon(cmd, argv, logFile, replicaEnv(s3));
  cleanup.defer(name, () => daemon.stop());
  await waitFor(name, daemon, async () => ((await readFile(logFile, 'utf8')).includes('"url":"http') ? true : undefined), 60_000, 20);
  return { url: urls[i]!, port: ports[i]!, daemon };
}

/** Waits until every replica sees `count` members up: ownership is computed over those, and replicas that disagree would each own a key. */
async function membersUp(replicas: Replica[], count: number): Promise<void> {
  for (const r of replicas) {
    await waitFor(`${r.url} to see ${count} replicas up`, r.daemon, async () => {
      const res = await fetch(`${r.url}/admin/v1/cluster`, { headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` }, signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
      if (!res) return undefined;
      const body = (await res.json().catch(() => ({}))) as { counts?: Record<string, number> };
      return body.counts?.up === count ? true : undefined;
    }, MEMBERS_UP_MS, 50);
  }
}

/** Reads `url` into nothing once, failing on anything but the whole blob: fills a replica's local tier. */
async function readOnceWhole(url: string, bytes: number, timeoutMs: number): Promise<void> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  let got = 0;
  for await (const chunk of res.body ?? []) got += (chunk as Uint8Array).byteLength;
  if (res.status !== 200 || got !== bytes) throw new Error(`cluster: ${url} answered ${res.status} with ${got} of ${bytes} bytes`);
}

export async function clusterPhase(o: ClusterOptions, cleanup: Cleanup): Promise<ClusterResult> {
  const upstream = o.up.log;
  const large = o.up.large;
  const blobPath = `/v2/large/blobs/${large.digest}`;
  const reads = async (base: string, what: string): Promise<ClusterReads> => {
    log(`cluster: hit read, ${what}`);
    return {
      one: await readThroughput(base + blobPath, large.size, 1, o.read.repeats, o.read.reader, o.timeoutMs),
      many: await readThroughput(base + blobPath, large.size, o.read.clients, o.read.repeats, o.read.reader, o.timeoutMs),
    };
  };

  // The single node first, alone on the machine, then stopped: a fresh process on an empty data dir as every replica is.
  const single = await startOcimirror({ name: 'cluster-single', upstreamUrl: o.up.registry.url, dataDir: join(o.workDir, 'cluster-single-data'), workDir: o.workDir, nodeArgs: o.nodeArgs }, cleanup);
  log('cluster: cold pull, single node');
  const singlePull = await pullSet(single.host, o.images, upstream, o.workDir, o.timeoutMs, single.pid);
  const singleReads = await reads(single.url, 'single node');
  await single.daemon.stop();
  await rm(single.dataDir, { recursive: true, force: true });

  let s3: S3Server | undefined;
  if (o.backend === 's3') {
    log('cluster: starting the S3 server (Swift s3api)');
    const starting = startS3Server({ bucket: 'ocimirror-bench' });
    cleanup.defer('s3 server', async () => (await starting).stop());
    s3 = await starting;
  }
  const ports = await Promise.all(Array.from({ length: o.replicas }, () => freePort()));
  const dataDir = (i: number, gen: number) => join(o.workDir, `cluster-r${i}-${gen}-data`);
  const replicas = await Promise.all(ports.map((_, i) => startReplica(i, 0, ports, o, s3, cleanup)));
  const frontPort = await freePort();
  const front = `127.0.0.1:${frontPort}`;
  const haproxy = await startHaproxy(o.workDir, ['listen mirrors', `  bind ${front}`, '  balance roundrobin', ...ports.map((p, i) => `  server r${i} 127.0.0.1:${p}`)], frontPort);
  cleanup.defer('haproxy', () => haproxy.stop());
  await membersUp(replicas, o.replicas);
  log(`cluster: ${o.replicas} replicas (${o.backend}) behind HAProxy ${front}`);

  log('cluster: cold pull through HAProxy');
  const clusterPull = await pullSet(front, o.images, upstream, o.workDir, o.timeoutMs);

  // Every replica reads the blob once, so whichever one a connection lands on serves it from its own disk.
  for (const r of replicas) await readOnceWhole(r.url + blobPath, large.size, o.timeoutMs);
  await settled(upstream);
  upstream.reset();
  const clusterReads = await reads(`http://${front}`, 'cluster through HAProxy');
  // The same from one replica straight, no HAProxy: what the balancer's relay of every byte costs.
  const replicaReads = await reads(replicas[0]!.url, 'one replica, no HAProxy');
  await settled(upstream);
  const hitUpstreamGets = upstream.count({ method: 'GET' });

  // A replica that does not own the blob restarts on an empty data dir under its own URL (same membership):
  // its read can only come from the bucket, or the owner replica, or (wrongly) the upstream.
  const members = replicas.map((r) => r.url);
  const blobOwner = owner(large.digest, members);
  const k = members.findIndex((m) => m !== blobOwner);
  let gen = 0;
  const emptyTier = async (clients: number): Promise<ReadResult> => {
    await replicas[k]!.daemon.stop();
    await rm(dataDir(k, gen), { recursive: true, force: true });
    gen++;
    replicas[k] = await startReplica(k, gen, ports, o, s3, cleanup);
    await membersUp(replicas, o.replicas);
    log(`cluster: read with an empty local tier, replica r${k}, ${clients} client(s)`);
    return readThroughput(replicas[k]!.url + blobPath, large.size, clients, 1, o.read.reader, o.timeoutMs);
  };
  await settled(upstream);
  upstream.reset();
  const emptyOne = await emptyTier(1);
  const emptyMany = await emptyTier(o.read.clients);
  await settled(upstream);
  const emptyUpstreamGets = upstream.count({ method: 'GET' });
  if (hitUpstreamGets + emptyUpstreamGets > 0) log(`warning: cluster reads reached the upstream ${hitUpstreamGets} + ${emptyUpstreamGets} times`);

  await haproxy.stop();
  for (const r of replicas) await r.daemon.stop();
  await s3?.stop();
  for (let i = 0; i < o.replicas; i++) for (let g = 0; g <= gen; g++) await rm(dataDir(i, g), { recursive: true, force: true });

  return {
    backend: o.backend,
    replicas: o.replicas,
    coldPull: { cluster: clusterPull, single: singlePull },
    hitRead: { blobBytes: large.size, cluster: { ...clusterReads, upstreamGets: hitUpstreamGets }, single: singleReads, replica: replicaReads },
    emptyTierRead: { one: emptyOne, many: emptyMany, upstreamGets: emptyUpstreamGets },
  };
}
