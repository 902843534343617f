/**
 * Runs the whole benchmark (`bench/run.ts`) with BENCH_PROFILE=smoke as a child process and checks that its JSON
 * holds every section with sane values. It asserts nothing about time: timing belongs in the benchmark.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import type { BenchResults, Target } from '../../bench/report.ts';
import { describeWithTools } from '../helpers/tools.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TIMEOUT_MS = 240_000;

/** Runs the bench to its end, or SIGTERM (its own cleanup runs) and then SIGKILL once `timeoutMs` has passed. */
function runBench(env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts'], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d));
    child.stderr.on('data', (d: Buffer) => (output += d));
    const term = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    const kill = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 15_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(term);
      clearTimeout(kill);
      resolve({ code, output });
    });
  });
}

const positive = (label: string, n: unknown) => expect(n, label).toBeGreaterThan(0);

describeWithTools(['docker-registry', 'skopeo', 'nginx', 'wrk', 'curl', 'openssl'], 'bench (smoke profile)', () => {
  let dir: string | undefined;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('runs every phase against every server and writes sane JSON', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ocimirror-bench-smoke-'));
    const out = join(dir, 'results.json');
    const { code, output } = await runBench({ BENCH_PROFILE: 'smoke', BENCH_OUT: out }, TIMEOUT_MS);
    expect(code, output).toBe(0);
    const r = JSON.parse(await readFile(out, 'utf8')) as BenchResults & { targets: Target[] };

    expect(r.params.profile).toBe('smoke');
    positive('machine.cpus', r.machine.cpus);
    positive('machine.memoryMiB', r.machine.memoryMiB);
    expect(r.machine.node).toBe(process.version);
    expect(r.machine.kernel).not.toBe('');

    // 1 + 2: pulls
    positive('pull.contentBytes', r.pull.contentBytes);
    expect(r.pull.direct, 'direct runs alternate with the cold, the warm and the running-cold rounds').toHaveLength(3 * r.params.pullRounds);
    expect(r.pull.ocimirror.cold.rounds).toHaveLength(r.params.pullRounds);
    expect(r.pull.ocimirror.coldRunning.rounds).toHaveLength(r.params.pullRounds);
    for (const round of r.pull.ocimirror.coldRunning.rounds) {
      // Emptied through the admin API, the running mirror fetches the whole set again.
      expect(round.upstreamBytes, 'a cold pull into the emptied running mirror fetches the content').toBeGreaterThanOrEqual(r.pull.contentBytes);
    }
    for (const d of r.pull.direct) {
      positive('direct wall', d.wallS);
      expect(d.upstreamBytes, 'a direct pull moves at least the content').toBeGreaterThanOrEqual(r.pull.contentBytes);
    }
    for (const m of [r.pull.ocimirror, r.pull.reference]) {
      positive('cold wall', m.cold.wallS);
      positive('warm wall', m.warm.wallS);
      expect(m.cold.upstreamBytes, 'a cold pull fetches the content').toBeGreaterThanOrEqual(r.pull.contentBytes);
    }
    expect(r.pull.ocimirror.warm.upstreamBlobGets, 'a warm pull fetches no blob').toBe(0);

    // 3: hit reads
    for (const server of ['ocimirror', 'reference', 'nginx'] as const) {
      positive(`${server} 1-client MiB/s`, r.hitRead[server].one.mibPerS);
      positive(`${server} N-client MiB/s`, r.hitRead[server].many.mibPerS);
      expect(r.hitRead[server].many.clients).toBe(r.params.readClients);
    }

    // 3 over HTTPS
    for (const server of ['ocimirror', 'nginx'] as const) {
      positive(`${server} TLS 1-client MiB/s`, r.hitReadTls[server].one.mibPerS);
      positive(`${server} TLS N-client MiB/s`, r.hitReadTls[server].many.mibPerS);
      expect(r.hitReadTls[server].many.clients).toBe(r.params.readClients);
    }
    expect(r.targets.map((t) => t.id)).toEqual(expect.arrayContaining(['readTls.one', 'readTls.many']));

    // 4: manifest by tag
    for (const server of ['ocimirror', 'reference', 'upstream'] as const) {
      const w = r.manifestByTag[server];
      positive(`${server} req/s`, w.requestsPerS);
      positive(`${server} p50`, w.p50Ms);
      expect(w.p99Ms, `${server} p99 ≥ p50`).toBeGreaterThanOrEqual(w.p50Ms);
      expect(w.failures, `${server} wrk failures`).toBe(0);
    }
    expect(r.manifestByTag.ocimirror.upstreamRequests, 'within its TTL a tag costs no upstream request').toBe(0);
    for (const variant of ['basic', 'bearer'] as const) {
      const w = r.manifestByTag.ocimirrorAuth[variant];
      positive(`auth on, ${variant}: req/s`, w.requestsPerS);
      expect(w.failures, `auth on, ${variant}: every request with credentials is served`).toBe(0);
      expect(w.upstreamRequests, `auth on, ${variant}: the cached tag costs no upstream request`).toBe(0);
    }
    expect(r.targets.map((t) => t.id)).toEqual(expect.arrayContaining(['manifest.authBasic', 'manifest.authBearer']));

    // 5: herd
    for (const server of ['ocimirror', 'reference'] as const) {
      const h = r.herd[server];
      expect(h.clients).toBe(r.params.herdClients);
      expect(h.failures, `${server} herd failures`).toEqual([]);
      expect(h.sha256Ok, `${server}: every herd client got the right bytes`).toBe(h.clients);
      positive(`${server} TTFB median`, h.ttfbMedianS);
      expect(h.ttfbMaxS).toBeGreaterThanOrEqual(h.ttfbMedianS);
      positive(`${server} herd wall`, h.wallS);
      positive(`${server} upstream GETs`, h.upstreamGets);
    }
    expect(r.herd.ocimirror.upstreamGets, 'ocimirror fetches a herded blob once').toBe(1);

    // 6: memory
    for (const server of ['ocimirror', 'reference'] as const) {
      positive(`${server} herd RSS`, r.rss[server].herdPeakMiB);
      expect(r.rss[server].runPeakMiB).toBeGreaterThanOrEqual(r.rss[server].herdPeakMiB);
    }

    // 7: metadata scale
    for (const run of [r.scale.empty, r.scale.populated]) {
      positive('scale start-up', run.startupMs);
      expect(run.blobsAtStart, 'ocimirror saw every pre-populated blob').toBe(run.blobs);
      expect(run.rounds.blob, 'one result per alternating round').toHaveLength(r.params.scaleRounds);
      for (const w of [run.manifestByTag, run.blob]) {
        positive('scale req/s', w.requestsPerS);
        positive('scale p99', w.p99Ms);
        expect(w.failures, 'scale wrk failures').toBe(0);
      }
    }
    expect(r.scale.populated.blobs).toBe(r.params.scaleBlobs);
    for (const page of [...r.scale.empty.console, ...r.scale.populated.console]) {
      expect(page.status, `console ${page.path}`).toBe(200);
      positive(`console ${page.path}`, page.medianMs);
    }

    // 8: push into a hosted registry, against a plain docker-registry
    expect(r.push.ocimirror.rounds).toHaveLength(r.params.pushRounds);
    expect(r.push.registry.rounds).toHaveLength(r.params.pushRounds);
    positive('push image bytes', r.push.imageBytes);
    for (const side of [r.push.ocimirror, r.push.registry]) positive('push wall', side.wallS);

    // 9: sync, then the same list again
    expect(r.sync.images).toBe(r.pull.images.length);
    expect(r.sync.ocimirror.rounds).toHaveLength(r.params.syncRounds);
    expect(r.sync.skopeo.rounds).toHaveLength(r.params.syncRounds);
    expect(r.sync.ocimirror.upstreamBytes, 'a sync into an empty cache fetches the content once').toBeGreaterThanOrEqual(r.pull.contentBytes);
    expect(r.sync.ocimirror.upstreamBytes).toBeLessThanOrEqual(1.01 * r.pull.contentBytes);
    expect(r.sync.again.upstreamBlobGets, 'an unchanged list fetches no blob').toBe(0);
    expect(r.sync.again.upstreamRequests, 'an unchanged list costs at most one request per tag').toBeLessThanOrEqual(r.sync.again.tags);

    // 10: export and import of a bundle, against skopeo's oci-archives
    expect(r.bundle.bundleBytes, 'the bundle holds the set').toBeGreaterThanOrEqual(r.pull.contentBytes);
    for (const side of [r.bundle.export, r.bundle.import, r.bundle.skopeo]) {
      expect(side.rounds).toHaveLength(r.params.syncRounds);
      positive('bundle MiB/s', side.mibPerS);
    }
    expect(r.targets.map((t) => t.id)).toEqual(expect.arrayContaining(['push.wall', 'sync.wall', 'sync.againRequests', 'sync.againBlobGets', 'bundle.export', 'bundle.import']));

    // 11: replicas behind HAProxy (the smoke profile keeps their blobs on disk)
    const cluster = r.cluster!;
    expect(cluster, 'the cluster phase ran').toBeDefined();
    expect(r.targets.map((t) => t.id)).toEqual(expect.arrayContaining(['cluster.coldBytes', 'cluster.emptyTierGets', 'scale.consolePage']));
    expect(r.targets.find((t) => t.id === 'cluster.emptyTierGets')?.value, 'a replica with an empty disk tier asks no upstream').toBe(0);

    expect(r.targets.map((t) => t.id)).toContain('herd.gets');
    for (const t of r.targets) expect(Number.isFinite(t.value), `target ${t.id}`).toBe(true);
  }, TIMEOUT_MS + 30_000);
});
