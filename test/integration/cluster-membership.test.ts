/**
 * @module test/integration/cluster-membership
 * Replicas that know each other, as operators run them: real `ocimirror serve` processes on
 * loopback with a short health interval. Each sees the others up (admin view, metrics); one
 * killed with SIGKILL is marked down by the others after failAfter checks and up again once it is
 * back; peers authenticate with the cluster secret, which no log line ever shows. DNS mode runs
 * against dnsmasq serving a headless-Service-like name with one A record per replica (127.0.0.x,
 * all on one port, as pods are).
 */
import { Resolver } from 'node:dns/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI_ARGS, spawnServe, type SpawnedMirror } from '../helpers/mirror.ts';
import { freePort } from '../helpers/ports.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { waitFor } from '../helpers/wait.ts';

const SECRET = 'integration-cluster-secret-0123456789-abcdef';
const WRONG = 'integration-wrong-secret-0123456789-abcdefgh';
const ADMIN = 'integration-admin-token-0123';

interface ClusterView {
  self: string;
  counts: Record<string, number>;
  members: Array<{ url: string; state: string; consecutiveFailures: number; self: boolean; version: string | null }>;
}

const dirs: string[] = [];
const procs: SpawnedMirror[] = [];
const outputs: Array<() => string> = [];
let dnsmasq: ChildProcess | undefined;

afterEach(async () => {
  for (const p of procs.splice(0)) {
    p.kill('SIGKILL');
    await p.exited;
  }
  if (dnsmasq) {
    const exited = new Promise((r) => dnsmasq!.once('exit', r));
    dnsmasq.kill('SIGKILL');
    await exited;
    dnsmasq = undefined;
  }
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  outputs.splice(0);
});

/** Runs one replica with the secret in its environment (as operators should pass it). */
async function startReplica(dir: string, name: string, listen: string, cluster: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<SpawnedMirror> {
  const file = path.join(dir, `${name}.yaml`);
  const config = {
    listen,
    storage: { path: path.join(dir, name) },
    upstreams: [],
    admin: { token: ADMIN },
    log: { level: 'debug' },
    cluster: { secretEnv: 'OCIMIRROR_CLUSTER_SECRET', healthInterval: '200ms', failAfter: 3, ...cluster },
    ...extra,
  };
  await writeFile(file, stringify(config));
  const proc = await spawnServe([...CLI_ARGS, 'serve', '--config', file], { env: { OCIMIRROR_CLUSTER_SECRET: SECRET } });
  procs.push(proc);
  outputs.push(proc.output);
  return proc;
}

async function view(url: string): Promise<ClusterView> {
  const res = await fetch(`${url}/admin/v1/cluster`, { headers: { authorization: `Bearer ${ADMIN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as ClusterView;
}

const stateOf = async (url: string, member: string) => (await view(url)).members.find((m) => m.url === member)?.state;

/** Waits until `url` sees exactly `members`, each in `state`. */
async function waitForView(url: string, members: string[], state = 'up', timeoutMs = 15_000): Promise<ClusterView> {
  return waitFor(`${url} to see ${members.join(', ')} ${state}`, async () => {
    const v = await view(url);
    const seen = v.members.map((m) => m.url).sort();
    return JSON.stringify(seen) === JSON.stringify([...members].sort()) && v.members.every((m) => m.state === state) && v;
  }, timeoutMs, 50);
}

async function metrics(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

describe('cluster membership with a static peer list', () => {
  it('sees every peer up, marks a killed one down after failAfter checks, and up again once it is back', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-cluster-'));
    dirs.push(dir);
    const ports = [await freePort(), await freePort(), await freePort()];
    const urls = ports.map((p) => `http://127.0.0.1:${p}`);
    const [a, b, c] = urls as [string, string, string];
    const replica = (i: number, extra: Record<string, unknown> = {}) => startReplica(dir, `r${i}`, `127.0.0.1:${ports[i]}`, { self: urls[i], peers: urls }, extra);
    // Replica a also has client auth on (no accounts): peers still get in with the cluster secret alone.
    const [, , third] = await Promise.all([replica(0, { auth: {} }), replica(1), replica(2)]);

    for (const url of urls) {
      const v = await waitForView(url, urls);
      expect(v.self).toBe(url);
      expect(v.counts).toEqual({ up: 3, down: 0, unknown: 0 });
      expect(v.members.filter((m) => m.self).map((m) => m.url)).toEqual([url]);
      expect(v.members.find((m) => !m.self)?.version).toMatch(/^\d+\.\d+\.\d+/);
    }
    const scrape = await metrics(b);
    expect(scrape).toContain('ocimirror_cluster_members{state="up"} 3');
    expect(scrape).toContain('ocimirror_cluster_members{state="down"} 0');
    for (const url of urls) expect(scrape).toContain(`ocimirror_cluster_member_up{member="${url}"} 1`);

    // The internal endpoint: the secret opens it (even where client auth is on), anything else is 401 in the OCI envelope.
    const health = await fetch(`${a}/cluster/v1/health`, { headers: { authorization: `Bearer ${SECRET}` } });
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ self: a, version: expect.any(String), members: expect.arrayContaining([{ url: b, state: 'up' }, { url: c, state: 'up' }]) });
    for (const headers of [{ authorization: `Bearer ${WRONG}` }, {} as Record<string, string>, { authorization: `Bearer ${ADMIN}` }]) {
      const refused = await fetch(`${b}/cluster/v1/health`, { headers });
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe('UNAUTHORIZED');
    }
    // Client auth does not open it either way: a v2 request without credentials is refused on a.
    expect((await fetch(`${a}/v2/`)).status).toBe(401);

    third.kill('SIGKILL');
    await third.exited;
    for (const url of [a, b]) {
      await waitFor(`${url} to mark ${c} down`, async () => (await stateOf(url, c)) === 'down', 10_000, 50);
      const member = (await view(url)).members.find((m) => m.url === c)!;
      expect(member.consecutiveFailures).toBeGreaterThanOrEqual(3);
      expect(await stateOf(url, b === url ? a : b)).toBe('up');
    }
    const down = await metrics(a);
    expect(down).toContain(`ocimirror_cluster_member_up{member="${c}"} 0`);
    expect(down).toContain('ocimirror_cluster_members{state="down"} 1');

    await replica(2);
    for (const url of urls) await waitForView(url, urls);

    const everything = outputs.map((o) => o()).join('\n');
    expect(everything).toContain('cluster member down');
    expect(everything).not.toContain(SECRET);
    expect(everything).not.toContain(WRONG);
  });
});

describeWithTools(['dnsmasq'], 'cluster membership from DNS records', () => {
  it('finds the replicas a name resolves to, and follows the records as replicas come and go', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-cluster-dns-'));
    dirs.push(dir);
    const hosts = path.join(dir, 'hosts');
    const name = 'ocimirror-headless.test';
    const setRecords = async (addresses: string[]) => {
      await writeFile(hosts, addresses.map((a) => `${a} ${name}\n`).join(''));
      dnsmasq?.kill('SIGHUP'); // re-reads the hosts file
    };
    await setRecords(['127.0.0.1', '127.0.0.2']);
    const dnsPort = await freePort();
    // Only the test's name, only from the hosts file, TTL 0 so nothing is cached between rounds.
    dnsmasq = spawn('dnsmasq', ['--keep-in-foreground', `--port=${dnsPort}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts', '--conf-file=/dev/null', '--pid-file=', '--user=root', '--local-ttl=0', '--local=/test/', `--addn-hosts=${hosts}`, '--log-facility=-'], { stdio: 'ignore' });
    const resolver = new Resolver({ timeout: 200, tries: 1 });
    resolver.setServers([`127.0.0.1:${dnsPort}`]);
    await waitFor('dnsmasq to answer', () => resolver.resolve4(name).then((r) => r.length === 2, () => false), 10_000, 50);

    // Every replica on the same port, as pods behind a headless Service: A records carry no port.
    const port = await freePort();
    const url = (host: string) => `http://${host}:${port}`;
    const replica = (host: string) => startReplica(dir, host, `${host}:${port}`, { self: url(host), dns: name, dnsServer: `127.0.0.1:${dnsPort}` });
    const [, second] = await Promise.all([replica('127.0.0.1'), replica('127.0.0.2')]);
    await waitForView(url('127.0.0.1'), [url('127.0.0.1'), url('127.0.0.2')]);
    await waitForView(url('127.0.0.2'), [url('127.0.0.1'), url('127.0.0.2')]);

    // Scaled up: a third record and a third replica.
    await setRecords(['127.0.0.1', '127.0.0.2', '127.0.0.3']);
    await replica('127.0.0.3');
    const all = ['127.0.0.1', '127.0.0.2', '127.0.0.3'].map(url);
    for (const u of all) await waitForView(u, all);

    // Scaled down: the record goes, and the member leaves the list rather than staying down.
    await setRecords(['127.0.0.1', '127.0.0.3']);
    second.kill('SIGKILL');
    await second.exited;
    await waitForView(url('127.0.0.1'), [url('127.0.0.1'), url('127.0.0.3')]);
    expect(await metrics(url('127.0.0.1'))).not.toContain(`member="${url('127.0.0.2')}"`);
    expect(outputs.map((o) => o()).join('\n')).not.toContain(SECRET);
  });
});
