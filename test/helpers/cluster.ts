/**
 * @module test/helpers/cluster
 * Replicas as operators run them: `ocimirror serve` processes that know each other (static peers,
 * a shared secret), all in front of one upstream, behind a real HAProxy balancing TCP connections
 * round-robin (an L4 switch). Resolves once every replica sees every running member up: ownership
 * is computed over the members up, and replicas that disagree would each own a key.
 *
 * Membership changes without touching the static peer list: `spares` members are listed (peers and
 * HAProxy server lines) but not started, so they stay down until `startReplica`. HAProxy checks every
 * server (TCP connect every 200 ms, one failure takes it out, one success puts it back) and
 * redispatches a refused connection, as an L4 switch's health check would.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { startHaproxy, type Haproxy } from './haproxy.ts';
import { CLI_ARGS, mirrorConfig, spawnServe, type SpawnedMirror } from './mirror.ts';
import { freePort } from './ports.ts';
import { waitFor } from './wait.ts';

export const CLUSTER_ADMIN_TOKEN = 'integration-admin-token-0123';
const SECRET = 'integration-cluster-secret-0123456789-abcdefghij';

export interface ClusterOptions {
  /** Replicas started at once (default 3). */
  size?: number;
  /** Members listed (peers, HAProxy) after the first `size` but not started: added later by `startReplica`. */
  spares?: number;
  name?: string;
  /** Merged over replica `i`'s config (plain objects deeply, anything else replaced). */
  replicaConfig?: (i: number) => Record<string, unknown>;
  /** Extra environment for every replica (next to the cluster secret). */
  env?: Record<string, string>;
  /** Appended to every HAProxy server line (e.g. 'send-proxy-v2 check-send-proxy'). */
  serverOptions?: string;
}

export interface TestCluster {
  /** Each member's URL (its `cluster.self`), spares last: the static peer list. */
  readonly urls: string[];
  /** The latest process of each member, by index; a spare's entry is empty until it is started. */
  readonly replicas: SpawnedMirror[];
  /** HAProxy's `host:port`. */
  readonly front: string;
  readonly dir: string;
  readonly haproxy: Haproxy;
  /** Replica `i`'s data directory (kept across restarts). */
  dataDir(i: number): string;
  /** Indices of the replicas whose process runs. */
  running(): number[];
  /** Starts replica `i` (a spare, or one stopped) on its own port and data dir; resolves once it listens. */
  startReplica(i: number): Promise<SpawnedMirror>;
  /** Sends `signal` to replica `i` and resolves with its exit code or signal once it ended. */
  stopReplica(i: number, signal: 'SIGTERM' | 'SIGKILL'): Promise<number | string>;
  /** Waits until every running replica sees exactly the running ones up and HAProxy routes to them only. */
  settle(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isPlainObject(v) && isPlainObject(out[k]) ? merge(out[k] as Record<string, unknown>, v) : v;
  return out;
}

const alive = (r: SpawnedMirror | undefined): r is SpawnedMirror => r !== undefined && r.proc.exitCode === null && r.proc.signalCode === null;

export async function startCluster(upstreamUrl: string, opts: ClusterOptions = {}): Promise<TestCluster> {
  const { size = 3, spares = 0, name = 'cluster', replicaConfig, env = {}, serverOptions } = opts;
  const dir = await mkdtemp(path.join(tmpdir(), `ocimirror-${name}-`));
  const ports = await Promise.all(Array.from({ length: size + spares }, () => freePort()));
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  const replicas: SpawnedMirror[] = [];
  const dataDir = (i: number) => path.join(dir, `r${i}`);
  let haproxy: Haproxy | undefined;

  const startReplica = async (i: number) => {
    if (alive(replicas[i])) throw new Error(`replica ${i} is already running`);
    const file = path.join(dir, `r${i}.yaml`);
    const config = merge(
      {
        ...mirrorConfig(upstreamUrl),
        listen: `127.0.0.1:${ports[i]}`,
        storage: { path: dataDir(i) },
        admin: { token: CLUSTER_ADMIN_TOKEN },
        // failAfter 25 (5 s): a killed owner stays 'up' long enough that a request right after the
        // kill meets the refused connection (the fallback under test), however loaded the machine is.
        cluster: { self: urls[i], peers: urls, secretEnv: 'OCIMIRROR_CLUSTER_SECRET', healthInterval: '200ms', failAfter: 25 },
      },
      replicaConfig?.(i) ?? {},
    );
    await writeFile(file, stringify(config));
    const replica = await spawnServe([...CLI_ARGS, 'serve', '--config', file], { env: { ...env, OCIMIRROR_CLUSTER_SECRET: SECRET } });
    replicas[i] = replica;
    return replica;
  };

  const stopReplica = async (i: number, signal: 'SIGTERM' | 'SIGKILL') => {
    const replica = replicas[i];
    if (!alive(replica)) throw new Error(`replica ${i} is not running`);
    replica.kill(signal);
    // A drain waits for in-flight pulls (shutdownGrace, 30 s by default); nothing waits longer.
    const timer = setTimeout(() => replica.kill('SIGKILL'), 60_000);
    try {
      return await replica.exited;
    } finally {
      clearTimeout(timer);
    }
  };

  const running = () => urls.map((_, i) => i).filter((i) => alive(replicas[i]));

  const stop = async () => {
    await haproxy?.stop();
    for (const r of replicas) {
      if (!alive(r)) continue;
      r.kill('SIGKILL');
      await r.exited;
    }
    await rm(dir, { recursive: true, force: true });
  };

  const settle = async (timeoutMs = 30_000) => {
    const up = running();
    for (const i of up) await waitForMembersUp(urls[i]!, up.length, timeoutMs);
    await waitFor(
      `HAProxy to route to replicas ${up.join(', ')} only`,
      async () => {
        const rows = (await haproxy!.stats()).filter((r) => r.pxname === 'mirrors' && /^r\d+$/.test(r.svname ?? ''));
        return rows.length === urls.length && rows.every((r) => r.status?.startsWith(up.includes(Number(r.svname!.slice(1))) ? 'UP' : 'DOWN'));
      },
      timeoutMs,
      50,
    );
  };

  try {
    await Promise.all(ports.slice(0, size).map((_, i) => startReplica(i)));
    const haproxyPort = await freePort();
    const front = `127.0.0.1:${haproxyPort}`;
    haproxy = await startHaproxy(
      dir,
      [
        'listen mirrors',
        `  bind ${front}`,
        '  balance roundrobin',
        // A connection refused by a replica that just died goes to another, as with an L4 switch.
        '  option redispatch',
        '  retries 3',
        ...ports.map((p, i) => `  server r${i} 127.0.0.1:${p} check inter 200 fall 1 rise 1${serverOptions ? ` ${serverOptions}` : ''}`),
      ],
      haproxyPort,
    );
    await settle(15_000);
    return {
      urls,
      replicas,
      front,
      dir,
      haproxy,
      dataDir,
      running,
      startReplica,
      stopReplica,
      settle,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Waits until the replica at `url` sees `count` members up (its admin view). */
export async function waitForMembersUp(url: string, count: number, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    `${url} to see ${count} replicas up`,
    async () => {
      const res = await fetch(`${url}/admin/v1/cluster`, { headers: { authorization: `Bearer ${CLUSTER_ADMIN_TOKEN}` } });
      return ((await res.json()) as { counts: Record<string, number> }).counts.up === count;
    },
    timeoutMs,
    50,
  );
}

/** A counter's value in a Prometheus scrape (0 when the series is absent). */
export async function counter(url: string, series: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}
