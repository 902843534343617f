/**
 * @module test/helpers/cluster
 * Replicas as operators run them: `ocimirror serve` processes that know each other (static peers,
 * a shared secret), all in front of one upstream, behind a real HAProxy balancing TCP connections
 * round-robin (an L4 switch). Resolves once every replica sees every member up: ownership is
 * computed over the members up, and replicas that disagree would each own a key.
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

export interface TestCluster {
  /** Each replica's URL (its `cluster.self`), in start order. */
  readonly urls: string[];
  readonly replicas: SpawnedMirror[];
  /** HAProxy's `host:port`. */
  readonly front: string;
  readonly dir: string;
  stop(): Promise<void>;
}

export async function startCluster(upstreamUrl: string, { size = 3, name = 'cluster' }: { size?: number; name?: string } = {}): Promise<TestCluster> {
  const dir = await mkdtemp(path.join(tmpdir(), `ocimirror-${name}-`));
  const ports = await Promise.all(Array.from({ length: size }, () => freePort()));
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  const replicas: SpawnedMirror[] = [];
  let haproxy: Haproxy | undefined;
  const stop = async () => {
    await haproxy?.stop();
    for (const r of replicas) {
      r.kill('SIGKILL');
      await r.exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(
      ports.map(async (port, i) => {
        const file = path.join(dir, `r${i}.yaml`);
        const config = {
          ...mirrorConfig(upstreamUrl),
          listen: `127.0.0.1:${port}`,
          storage: { path: path.join(dir, `r${i}`) },
          admin: { token: CLUSTER_ADMIN_TOKEN },
          // failAfter 25 (5 s): a killed owner stays 'up' long enough that a request right after the
          // kill meets the refused connection (the fallback under test), however loaded the machine is.
          cluster: { self: urls[i], peers: urls, secretEnv: 'OCIMIRROR_CLUSTER_SECRET', healthInterval: '200ms', failAfter: 25 },
        };
        await writeFile(file, stringify(config));
        replicas[i] = await spawnServe([...CLI_ARGS, 'serve', '--config', file], { env: { OCIMIRROR_CLUSTER_SECRET: SECRET } });
      }),
    );
    const haproxyPort = await freePort();
    const front = `127.0.0.1:${haproxyPort}`;
    haproxy = await startHaproxy(dir, ['listen mirrors', `  bind ${front}`, '  balance roundrobin', ...ports.map((p, i) => `  server r${i} 127.0.0.1:${p}`)], haproxyPort);
    for (const url of urls) await waitForMembersUp(url, size, 15_000);
    return { urls, replicas, front, dir, stop };
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
