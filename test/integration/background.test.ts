/**
 * The background queue against a real upstream (docker-registry behind the counting fault proxy)
 * and the real mirror: eviction under a quota (never breaking a read in flight, never touching a
 * pinned image), durable jobs surviving SIGKILL, prefetch on pull and through the admin API and
 * the CLI (joining the single-flight fill), asynchronous image deletion, the watch list, the admin
 * API's token, /metrics, and `ocimirror gc --offline`.
 *
 * Every wait is a poll with a deadline; nothing asserts on how long something took.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Metadata } from '../../src/cache/metadata/metadata.ts';
import { dataPaths } from '../../src/cache/paths.ts';
import { UsageMeter } from '../../src/cache/metadata/usage.ts';
import type { RawConfig } from '../../src/config/schema.ts';
import { JOB_STATES, JOB_TYPES } from '../../src/jobs/index.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { get, pullImage, sha256 } from '../helpers/pull.ts';
import { rawGet } from '../helpers/raw-get.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { MANIFEST_ACCEPT, type FixtureImage } from '../helpers/images.ts';
import { pushFixtures } from '../helpers/push.ts';
import { mirrorConfig, runCli, spawnMirror, startTestMirror, type SpawnedMirror, type TestMirror } from '../helpers/mirror.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

const TOKEN = 'background-test-admin-token-0123456789';
const MiB = 1024 * 1024;
/** The quota of the eviction tests: the 8 MiB `large` layer fits, `large` plus everything else does not. */
const QUOTA = 9 * MiB;
const QUOTA_CONFIG = { maxSize: '9MiB', lowWatermark: '50%' };
/** Generous per-test budget: the machine may be loaded; every wait inside has its own deadline. */
const SLOW = { timeout: 180_000 };


/** Rejects if `p` has not settled within `ms`. */
async function within<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

interface AdminAnswer {
  status: number;
  headers: Headers;
  json: any;
  text: string;
}

/** One admin API call; `token: null` sends no Authorization header. */
async function admin(base: string, method: string, apiPath: string, body?: unknown, token: string | null = TOKEN): Promise<AdminAnswer> {
  const res = await fetch(`${base}/admin/v1${apiPath}`, {
    method,
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

/** Polls GET /admin/v1/jobs/<id> until the job is done or failed. */
async function waitForJob(base: string, id: number, timeoutMs = 60_000): Promise<any> {
  return waitFor(`job ${id} to finish`, async () => {
    const { status, json } = await admin(base, 'GET', `/jobs/${id}`);
    expect(status).toBe(200);
    return json.state === 'done' || json.state === 'failed' ? json : undefined;
  }, timeoutMs, 100);
}

/**
 * Waits until no fill is copying or committing (a commit may queue an eviction), no job is
 * queued or running, and the runner's queue is idle.
 */
async function settle(m: TestMirror, timeoutMs = 60_000): Promise<void> {
  const { storage, background } = m.mirror;
  const quiet = () => storage.blobs.activeFills === 0 && background.runner.running === 0 && background.store.depth() === 0;
  await waitFor('fills and background jobs to finish', async () => {
    if (!quiet()) return undefined;
    await within('runner.onIdle()', background.runner.onIdle(), timeoutMs);
    return quiet();
  }, timeoutMs);
}


/** Every digest an image needs: its manifests and its blobs. */
function manifestDigests(image: FixtureImage): string[] {
  return [image.manifest.digest, ...(image.manifest.children ?? []).map((c) => c.digest)];
}

const blobCached = (m: TestMirror, digest: string) => m.mirror.storage.metadata.getBlob(digest) !== undefined;
const manifestCached = (m: TestMirror, digest: string) => m.mirror.storage.metadata.getManifest(digest) !== undefined;
const blobFileExists = (dataDir: string, digest: string) => existsSync(dataPaths(dataDir).blobFile(digest.slice('sha256:'.length)));
const usageOf = (m: TestMirror) => new UsageMeter(m.mirror.storage.metadata).current();

/**
 * The cache never holds a manifest it could not serve whole: every config and layer of a cached
 * manifest is a cached blob, every entry of a cached index a cached manifest, every tag points at
 * a cached manifest. (Holds whenever no pull is half-way, as after `settle`.)
 */
function expectConsistent(m: TestMirror): void {
  // Its own read-only connection: the invariant is checked in the file, as another process would see it.
  const db = new Database(m.mirror.storage.paths.database, { readonly: true });
  try {
    const dangling = db.prepare(`SELECT r.parent, r.child, r.kind FROM refs r JOIN manifests m ON m.digest = r.parent
      WHERE (r.kind = 'blob' AND r.child NOT IN (SELECT digest FROM blobs))
         OR (r.kind = 'manifest' AND r.child NOT IN (SELECT digest FROM manifests))`).all();
    expect(dangling, 'cached manifests whose content is gone').toEqual([]);
    const tags = db.prepare('SELECT upstream, repo, tag, digest FROM tags WHERE digest NOT IN (SELECT digest FROM manifests)').all();
    expect(tags, 'tags pointing at manifests that are gone').toEqual([]);
  } finally {
    db.close();
  }
}

/** Results of the finished eviction jobs. */
function evictionReports(m: TestMirror): Array<{ evicted: number; skippedInUse: number; skippedPinned: number; manifestsDropped: number; tagsDropped: number; usage: number }> {
  return m.mirror.background.store
    .list({ type: 'evict', state: 'done', limit: 1000 })
    .map((j) => j.result as { evicted: number; skippedInUse: number; skippedPinned: number; manifestsDropped: number; tagsDropped: number; usage: number });
}

/** Values of a Prometheus series whose labels include `labels`; undefined when no such series. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

/** Stops a spawned mirror: SIGTERM, then SIGKILL if it has not exited in time. */
async function stopSpawned(p: SpawnedMirror | undefined): Promise<void> {
  if (!p || p.proc.exitCode !== null || p.proc.signalCode !== null) return;
  p.kill('SIGTERM');
  try {
    await within('mirror to exit after SIGTERM', p.exited, 20_000);
  } catch {
    p.kill('SIGKILL');
    await within('mirror to exit after SIGKILL', p.exited, 10_000);
  }
}

/**
 * A GET whose body is held after the first chunk until `resume()`: the mirror is left with the
 * blob file open and its response blocked on a full socket, i.e. a read in flight.
 */
function pausedGet(url: string) {
  let onFirst!: () => void;
  const firstChunk = new Promise<void>((r) => (onFirst = r));
  let res: http.IncomingMessage | undefined;
  const done = new Promise<{ status: number; bytes: number; digest: string; complete: boolean; cache: string | undefined }>((resolve, reject) => {
    const req = http.get(url, (r) => {
      res = r;
      const hash = createHash('sha256');
      let bytes = 0;
      r.on('data', (c: Buffer) => {
        hash.update(c);
        if (bytes === 0) {
          r.pause();
          onFirst();
        }
        bytes += c.length;
      });
      r.on('end', () => resolve({ status: r.statusCode ?? 0, bytes, digest: `sha256:${hash.digest('hex')}`, complete: r.complete, cache: r.headers['x-cache'] as string | undefined }));
      r.on('error', reject);
      r.on('aborted', () => reject(new Error('response aborted')));
    });
    req.on('error', reject);
  });
  done.catch(() => {}); // awaited by the test; a read destroyed in cleanup must not be an unhandled rejection
  return { firstChunk, done, resume: () => res?.resume(), destroy: () => res?.destroy() };
}

// ---------------------------------------------------------------------------------------------

describeWithTools(['docker-registry'], 'the background queue against a real upstream', () => {
  let upstream: Upstream;
  /** Mirrors started by the running test, stopped after it whatever happens. */
  const started: TestMirror[] = [];

  beforeAll(async () => {
    upstream = await startUpstream();
  });
  afterAll(async () => {
    await upstream?.stop();
  });
  beforeEach(() => {
    upstream.proxy.clear();
    upstream.proxy.reset();
    return async () => {
      upstream.proxy.clear();
      for (const m of started.splice(0)) await m.stop();
    };
  });

  async function mirror(extra: Parameters<typeof mirrorConfig>[1] = {}): Promise<TestMirror> {
    const m = await startTestMirror(mirrorConfig(upstream.url, { admin: { token: TOKEN }, ...extra }));
    started.push(m);
    return m;
  }
  const image = (ref: string) => upstream.fixtures.image(ref);
  /** Everything but `large`: about 1.8 MiB, which with `large` is over QUOTA. */
  const SMALLER = ['small:v1', 'small:v2', 'small:v3', 'medium', 'many', 'multi', 'library/alpine'];

  describe('eviction under storage.maxSize', () => {
    it('keeps usage under the quota while pulls continue, and evicted images pull again correctly', SLOW, async () => {
      const m = await mirror({ storage: QUOTA_CONFIG });
      const large = image('large');
      const bigLayer = large.manifest.layers[0]!;
      // large first: it becomes the least recently used blob once the rest arrive.
      await pullImage(m.url, upstream.fixtures, large);
      for (const ref of SMALLER) await pullImage(m.url, upstream.fixtures, image(ref));
      await settle(m);

      const usage = usageOf(m);
      expect(usage.bytes).toBeLessThanOrEqual(QUOTA);
      const viaAdmin = await admin(m.url, 'GET', '/usage');
      expect(viaAdmin.status).toBe(200);
      expect(viaAdmin.json).toMatchObject({ bytes: usage.bytes, blobs: usage.blobs, maxSize: QUOTA, lowWatermark: 0.5 });
      expect(usage).toEqual(new UsageMeter(m.mirror.storage.metadata).recount().usage);

      // The LRU blob went, and with it its manifest and tag; nothing left refers to missing content.
      const reports = evictionReports(m);
      expect(reports.reduce((n, r) => n + r.evicted, 0)).toBeGreaterThan(0);
      expect(blobCached(m, bigLayer.digest)).toBe(false);
      expect(blobFileExists(m.dataDir, bigLayer.digest)).toBe(false);
      expect(manifestCached(m, large.manifest.digest)).toBe(false);
      expect(m.mirror.storage.metadata.getTag('test', 'large', 'latest')).toBeUndefined();
      expectConsistent(m);

      // Re-pulling the evicted image goes back to the upstream for the tag and the layer, once.
      upstream.proxy.reset();
      await pullImage(m.url, upstream.fixtures, large);
      expect(upstream.proxy.count({ pathIncludes: '/v2/large/manifests/latest' })).toBeGreaterThan(0);
      expect(upstream.proxy.count({ method: 'GET', pathIncludes: bigLayer.digest })).toBe(1);
      await settle(m);
      expect(usageOf(m).bytes).toBeLessThanOrEqual(QUOTA);
      expectConsistent(m);

      // And so does everything the second round evicted.
      for (const ref of SMALLER) await pullImage(m.url, upstream.fixtures, image(ref));
      await settle(m);
      expect(usageOf(m).bytes).toBeLessThanOrEqual(QUOTA);
      expectConsistent(m);
    });

    it('never breaks a read in flight: the blob is skipped as in use or unlinked under the open file', SLOW, async () => {
      const m = await mirror({ storage: QUOTA_CONFIG });
      const large = image('large');
      const bigLayer = large.manifest.layers[0]!;
      const url = `${m.url}/v2/large/blobs/${bigLayer.digest}`;
      const first = await get(url);
      expect(sha256(first.body)).toBe(bigLayer.digest);
      await waitFor('the large layer to be committed', () => blobCached(m, bigLayer.digest));

      const read = pausedGet(url);
      try {
        await within('the first chunk of the paused read', read.firstChunk, 30_000);
        // Held here: the mirror's read stream has the file open until the client takes the rest.
        const inUseWhilePaused = m.mirror.storage.blobs.inUse(bigLayer.digest);

        for (const ref of SMALLER) await pullImage(m.url, upstream.fixtures, image(ref));
        const evict = await admin(m.url, 'POST', '/evict');
        expect(evict.status).toBe(202);
        expect(evict.json).toMatchObject({ type: 'evict' });
        const job = await waitForJob(m.url, evict.json.id);
        expect(job.state).toBe('done');
        await settle(m);

        const reports = evictionReports(m);
        expect(reports.reduce((n, r) => n + r.evicted, 0)).toBeGreaterThan(0);
        if (inUseWhilePaused) {
          // It was the least recently used blob: only being read kept it.
          expect(reports.reduce((n, r) => n + r.skippedInUse, 0)).toBeGreaterThan(0);
          expect(blobCached(m, bigLayer.digest)).toBe(true);
        }
        expectConsistent(m);

        read.resume();
        const result = await within('the paused read to complete', read.done, 60_000);
        expect(result).toMatchObject({ status: 200, bytes: bigLayer.size, digest: bigLayer.digest, complete: true, cache: 'HIT' });
      } finally {
        read.destroy();
      }
      await settle(m);
      expect(usageOf(m).bytes).toBeLessThanOrEqual(QUOTA);
    });
  });

  describe('pinned images', () => {
    /**
     * Pulls `pinned` first (so it is the least recently used image, the first eviction would
     * take), then `other` (sharing its base layers), the rest and `large`, pushing usage past
     * the quota; then checks the pinned image is whole and `other` lost exactly its own content.
     */
    async function pinnedSurvivesPressure(m: TestMirror, pinned: FixtureImage, other: FixtureImage): Promise<void> {
      await pullImage(m.url, upstream.fixtures, pinned);
      await pullImage(m.url, upstream.fixtures, other);
      for (const ref of ['medium', 'many', 'multi', 'library/alpine', 'large']) await pullImage(m.url, upstream.fixtures, image(ref));
      await settle(m);

      const reports = evictionReports(m);
      expect(reports.reduce((n, r) => n + r.evicted, 0)).toBeGreaterThan(0);
      expect(reports.reduce((n, r) => n + r.skippedPinned, 0)).toBeGreaterThan(0);
      expect(usageOf(m).bytes).toBeLessThanOrEqual(QUOTA);

      for (const blob of upstream.fixtures.allBlobs(pinned)) {
        expect(blobCached(m, blob.digest), `pinned blob ${blob.digest}`).toBe(true);
        expect(blobFileExists(m.dataDir, blob.digest)).toBe(true);
      }
      expect(manifestCached(m, pinned.manifest.digest)).toBe(true);
      expect(m.mirror.storage.metadata.getTag('test', 'small', pinned.tags[0]!)?.digest).toBe(pinned.manifest.digest);
      // The unpinned sibling was older than everything but the pinned image: its own top layer
      // and config went, its manifest and tag with them; the base layers it shares stayed.
      expect(blobCached(m, other.manifest.layers[2]!.digest)).toBe(false);
      expect(blobCached(m, other.manifest.config!.digest)).toBe(false);
      expect(manifestCached(m, other.manifest.digest)).toBe(false);
      expect(m.mirror.storage.metadata.getTag('test', 'small', other.tags[0]!)).toBeUndefined();
      expectConsistent(m);

      // Served from the cache, every byte, without asking the upstream.
      upstream.proxy.reset();
      await pullImage(m.url, upstream.fixtures, pinned);
      expect(upstream.proxy.records).toEqual([]);
    }

    it('keeps an image pinned in the config (pin:) through eviction under pressure', SLOW, async () => {
      const m = await mirror({ storage: QUOTA_CONFIG, pin: ['registry.test/small:v1'] });
      const pins = await admin(m.url, 'GET', '/pins');
      expect(pins.json.pins).toEqual([expect.objectContaining({ ref: 'registry.test/small:v1', source: 'config' })]);
      await pinnedSurvivesPressure(m, image('small:v1'), image('small:v2'));
    });

    it('keeps an image pinned through POST /admin/v1/pins through eviction under pressure', SLOW, async () => {
      const m = await mirror({ storage: QUOTA_CONFIG });
      const added = await admin(m.url, 'POST', '/pins', { image: 'registry.test/small:v2' });
      expect(added.status).toBe(201);
      expect(added.json).toEqual({ pinned: 'registry.test/small:v2' });
      const pins = await admin(m.url, 'GET', '/pins');
      expect(pins.json.pins).toEqual([expect.objectContaining({ ref: 'registry.test/small:v2', source: 'admin' })]);
      await pinnedSurvivesPressure(m, image('small:v2'), image('small:v1'));
    });

    it('refuses through POST /admin/v1/pins, as image deletion does, a pin on a registry the mirror does not serve', SLOW, async () => {
      const m = await mirror();
      const refused = await admin(m.url, 'POST', '/pins', { image: 'evil.example/x:1' });
      expect(refused.status).toBe(404);
      expect(refused.json.errors[0]).toMatchObject({ code: 'NAME_UNKNOWN', message: "registry 'evil.example' is not configured on this mirror" });
      expect((await admin(m.url, 'POST', '/pins', { image: 'registry.test/Bad_Name:v1' })).status).toBe(400);
      expect((await admin(m.url, 'GET', '/pins')).json.pins).toEqual([]);
      expect((await admin(m.url, 'POST', '/pins', { image: 'docker.io/library/alpine:3.19' })).status).toBe(201);
    });

    it('refuses to start with a config pin on a registry no upstream serves, naming the pin', SLOW, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-bg-pin-'));
      try {
        const configFile = path.join(dir, 'pin.yaml');
        const raw = mirrorConfig(upstream.url, { storage: { path: path.join(dir, 'data') }, pin: ['registry.test/small:v1', 'evil.example/x:1'] });
        await writeFile(configFile, stringify(raw));
        const run = await runCli(['serve', '--config', configFile], {}, 30_000);
        expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(2);
        expect(run.stderr).toContain("pin[1]: registry 'evil.example' is not configured on this mirror");
        expect(run.stderr).not.toContain('pin[0]');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('durable jobs', () => {
    it('runs a prefetch job that was running when the process was SIGKILLed again after restart', SLOW, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-bg-kill-'));
      const dataDir = path.join(dir, 'data');
      const raw = mirrorConfig(upstream.url, { admin: { token: TOKEN } });
      const medium = image('medium');
      const slow = medium.manifest.layers[1]!;
      let first: SpawnedMirror | undefined;
      let second: SpawnedMirror | undefined;
      try {
        // About 16 s for this layer: the job is still running when the process is killed.
        upstream.proxy.throttle(16 << 10, { pathIncludes: slow.digest });
        first = await spawnMirror(raw, dataDir, 60_000);
        const queued = await admin(first.url, 'POST', '/prefetch', { images: ['registry.test/medium:latest'] });
        expect(queued.status).toBe(202);
        expect(queued.json.jobs).toHaveLength(1);
        const id: number = queued.json.jobs[0].id;
        const url1 = first.url;
        await waitFor('the prefetch job to be running, fetching the throttled layer', async () => {
          const job = await admin(url1, 'GET', `/jobs/${id}`);
          return job.json.state === 'running' && upstream.proxy.count({ method: 'GET', pathIncludes: slow.digest }) > 0;
        });
        first.kill('SIGKILL');
        expect(await within('the killed mirror to exit', first.exited, 10_000)).toBe('SIGKILL');
        upstream.proxy.clear();

        second = await spawnMirror(raw, dataDir, 60_000);
        const job = await waitForJob(second.url, id);
        expect(job, JSON.stringify(job)).toMatchObject({ id, type: 'prefetch', state: 'done' });
        expect(job.attempts).toBeGreaterThanOrEqual(2); // the killed attempt counts
        expect(job.result).toMatchObject({ digest: medium.manifest.digest, blobsDone: upstream.fixtures.allBlobs(medium).length });
        expect(second.output()).toContain('requeued jobs interrupted by the last exit');

        upstream.proxy.reset();
        await pullImage(second.url, upstream.fixtures, medium);
        expect(upstream.proxy.records).toEqual([]);
      } finally {
        upstream.proxy.clear();
        first?.kill('SIGKILL');
        await stopSpawned(second);
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('prefetch', () => {
    it('after the first node resolves a tag, the second node pulls both platforms with zero upstream requests', SLOW, async () => {
      const m = await mirror({ prefetch: { onPull: true } });
      const multi = image('multi');
      // Node 1: containerd resolving the tag (HEAD), nothing else.
      const head = await get(`${m.url}/v2/multi/manifests/latest`, { accept: MANIFEST_ACCEPT }, 'HEAD');
      expect(head.res.status).toBe(200);
      expect(head.res.headers.get('docker-content-digest')).toBe(multi.manifest.digest);
      await settle(m);
      const jobs = await admin(m.url, 'GET', '/jobs?type=prefetch');
      expect(jobs.json.depth).toBe(0);
      expect(jobs.json.jobs).toEqual([expect.objectContaining({ state: 'done', result: expect.objectContaining({ digest: multi.manifest.digest, blobsTotal: upstream.fixtures.allBlobs(multi).length }) })]);

      // Node 2: the whole image, both platforms.
      upstream.proxy.reset();
      await pullImage(m.url, upstream.fixtures, multi);
      expect(upstream.proxy.count()).toBe(0);
    });

    it('a client arriving mid-prefetch joins the same upstream stream', SLOW, async () => {
      const m = await mirror();
      const large = image('large');
      const layer = large.manifest.layers[0]!;
      upstream.proxy.throttle(2 * MiB, { pathIncludes: layer.digest });
      const queued = await admin(m.url, 'POST', '/prefetch', { images: ['registry.test/large:latest'] });
      expect(queued.status).toBe(202);
      const id: number = queued.json.jobs[0].id;
      await waitFor('the prefetch fill to be under way', () => {
        const rec = upstream.proxy.records.find((r) => r.method === 'GET' && r.path.includes(layer.digest));
        return m.mirror.storage.blobs.inflight(layer.digest) !== undefined && rec !== undefined && rec.bytesOut > 0;
      });
      const client = await get(`${m.url}/v2/large/blobs/${layer.digest}`);
      expect(client.res.status).toBe(200);
      expect(client.body.length).toBe(layer.size);
      expect(sha256(client.body)).toBe(layer.digest);
      const job = await waitForJob(m.url, id);
      expect(job).toMatchObject({ state: 'done', result: { fetched: 2 } }); // the config and the layer
      expect(upstream.proxy.count({ method: 'GET', pathIncludes: layer.digest })).toBe(1);
      expect(blobCached(m, layer.digest)).toBe(true);
    });

    it('`ocimirror prefetch` on the command line prefetches an image, naming it and its digest', SLOW, async () => {
      const m = await mirror();
      const medium = image('medium');
      const run = await runCli(['prefetch', '--url', m.url, '--token', TOKEN, 'registry.test/medium:latest'], {}, 120_000);
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
      expect(run.stdout).toContain('registry.test/medium:latest');
      expect(run.stdout).toContain(medium.manifest.digest);
      for (const blob of upstream.fixtures.allBlobs(medium)) expect(blobCached(m, blob.digest), blob.digest).toBe(true);
      upstream.proxy.reset();
      await pullImage(m.url, upstream.fixtures, medium);
      expect(upstream.proxy.records).toEqual([]);
    });

    it('the watch list caches a tag with no client, and follows it when it moves upstream', SLOW, async () => {
      const v1 = image('small:v1');
      const v3 = image('small:v3'); // tagged latest
      const m = await mirror({ prefetch: { onPull: false, images: [{ image: 'registry.test/small:latest', refresh: '300ms' }] } });
      const cachedWhole = (img: FixtureImage) =>
        m.mirror.storage.metadata.getTag('test', 'small', 'latest')?.digest === img.manifest.digest
        && manifestDigests(img).every((d) => manifestCached(m, d))
        && upstream.fixtures.allBlobs(img).every((b) => blobCached(m, b.digest));
      try {
        await waitFor('small:latest (v3) cached by the watch list', () => cachedWhole(v3), 60_000);
        await pushFixtures(upstream.registry.url, upstream.fixtures, [{ ...v1, tags: ['latest'] }]);
        await waitFor('the moved tag (now v1) cached by the watch list', () => cachedWhole(v1), 60_000);
      } finally {
        await pushFixtures(upstream.registry.url, upstream.fixtures, [{ ...v3, tags: ['latest'] }]);
      }
      // No client asked for anything: only scrapes and admin calls reached the mirror.
      const scrape = await (await fetch(`${m.url}/metrics`)).text();
      expect(metric(scrape, 'ocimirror_http_requests_total', { route: 'manifest' })).toBeUndefined();
      expect(metric(scrape, 'ocimirror_http_requests_total', { route: 'blob' })).toBeUndefined();
      const refresh = m.mirror.background.store.list({ type: 'refresh', state: 'done', limit: 1000 });
      expect(refresh.length).toBeGreaterThanOrEqual(2);
    });
  });

  describe('asynchronous deletion', () => {
    it('deleting an image removes exactly the blobs no other cached image uses', SLOW, async () => {
      const m = await mirror();
      const v1 = image('small:v1');
      const v2 = image('small:v2');
      await pullImage(m.url, upstream.fixtures, v1);
      await pullImage(m.url, upstream.fixtures, v2);
      await settle(m);
      const before = await admin(m.url, 'GET', '/repositories');
      expect(before.json.repositories).toEqual([expect.objectContaining({ upstream: 'test', repo: 'small', tags: [expect.objectContaining({ tag: 'v1' }), expect.objectContaining({ tag: 'v2' })] })]);

      const del = await admin(m.url, 'DELETE', `/images?image=${encodeURIComponent('registry.test/small:v1')}`);
      expect(del.status).toBe(202);
      expect(del.json).toMatchObject({ type: 'delete', id: expect.any(Number) });
      const job = await waitForJob(m.url, del.json.id);
      const own = [v1.manifest.layers[2]!, v1.manifest.config!];
      expect(job).toMatchObject({
        state: 'done',
        result: { found: true, tagsRemoved: 1, manifestsRemoved: 1, blobsRemoved: 2, bytesFreed: own[0]!.size + own[1]!.size },
      });

      for (const blob of own) {
        expect(blobCached(m, blob.digest), `v1's own ${blob.digest}`).toBe(false);
        expect(blobFileExists(m.dataDir, blob.digest)).toBe(false);
      }
      expect(manifestCached(m, v1.manifest.digest)).toBe(false);
      for (const blob of upstream.fixtures.allBlobs(v2)) {
        expect(blobCached(m, blob.digest), `v2's ${blob.digest}`).toBe(true);
        expect(blobFileExists(m.dataDir, blob.digest)).toBe(true);
      }
      expect(manifestCached(m, v2.manifest.digest)).toBe(true);
      const after = await admin(m.url, 'GET', '/repositories');
      expect(after.json.repositories).toEqual([expect.objectContaining({ repo: 'small', tags: [expect.objectContaining({ tag: 'v2', digest: v2.manifest.digest })] })]);
      expectConsistent(m);

      // Pulling v1 again fetches just what was deleted: the shared base layers are still here.
      upstream.proxy.reset();
      await pullImage(m.url, upstream.fixtures, v1);
      for (const base of v1.manifest.layers.slice(0, 2)) expect(upstream.proxy.count({ pathIncludes: base.digest })).toBe(0);
      for (const blob of own) expect(upstream.proxy.count({ method: 'GET', pathIncludes: blob.digest })).toBe(1);
    });
  });

  describe('the admin API', () => {
    it('refuses at once to queue the deletion of an image on a registry the mirror does not have, and queues nothing', SLOW, async () => {
      const m = await mirror();
      const del = await admin(m.url, 'DELETE', `/images?image=${encodeURIComponent('elsewhere.test/small:v1')}`);
      expect(del.status).toBe(404);
      expect(del.json.errors[0]).toMatchObject({ code: 'NAME_UNKNOWN', message: "registry 'elsewhere.test' is not configured on this mirror" });
      expect((await admin(m.url, 'DELETE', '/images?image=registry.test/Bad_Name:v1')).status).toBe(400);
      expect(m.mirror.background.store.list()).toEqual([]);
    });

    it('refuses requests without the token, with a wrong token, and when no token is configured', SLOW, async () => {
      const m = await mirror();
      const noToken = await admin(m.url, 'GET', '/usage', undefined, null);
      expect(noToken.status).toBe(401);
      expect(noToken.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(noToken.json.errors[0].code).toBe('UNAUTHORIZED');
      const wrong = await admin(m.url, 'GET', '/usage', undefined, `${TOKEN}x`);
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get('www-authenticate')).toMatch(/^Bearer /);
      // Mutations are refused before they do anything.
      expect((await admin(m.url, 'POST', '/prefetch', { images: ['registry.test/small:v1'] }, null)).status).toBe(401);
      expect((await admin(m.url, 'DELETE', '/images?image=registry.test/small:v1', undefined, 'nope')).status).toBe(401);
      expect((await admin(m.url, 'POST', '/pins', { image: 'registry.test/small:v1' }, null)).status).toBe(401);
      expect(m.mirror.background.store.list()).toEqual([]);
      expect(m.mirror.background.pins.list()).toEqual([]);
      expect((await admin(m.url, 'GET', '/usage')).status).toBe(200);

      const open = await startTestMirror(mirrorConfig(upstream.url));
      started.push(open);
      for (const token of [null, TOKEN, '']) {
        const r = await admin(open.url, 'GET', '/usage', undefined, token);
        expect(r.status, `token ${String(token)}`).toBe(401);
        expect(r.headers.get('www-authenticate')).toMatch(/^Bearer /);
      }
    });

    it('is never reachable through /v2/ paths', SLOW, async () => {
      const m = await mirror();
      const auth = { authorization: `Bearer ${TOKEN}` };
      // Raw request targets: the mirror dispatches on the target as sent, before any `..` is resolved.
      const paths = ['/v2/admin/v1/usage', '/v2/admin/v1/jobs', '/v2/./admin/v1/usage', '/v2/../admin/v1/usage', '/v2/%2e%2e/admin/v1/usage', '/v2/x/../../admin/v1/usage'];
      const reached: string[] = [];
      for (const p of paths) {
        const r = await rawGet(m.url, p, auth);
        if (r.status === 200 || r.body.includes('maxSize') || r.body.includes('"jobs"')) reached.push(`${p} → ${r.status} ${r.body.slice(0, 80)}`);
      }
      expect(reached.join('\n'), 'admin API answers through /v2/ paths').toBe('');
    });
  });

  describe('/metrics', () => {
    it('exposes requests, bytes, upstream requests, fills, cache size, jobs, queue depth and evictions with real values', SLOW, async () => {
      const m = await mirror({ storage: { maxSize: '512KiB', lowWatermark: '50%' } });
      const blob = image('small:v1').manifest.layers[2]!;
      const url = `${m.url}/v2/small/blobs/${blob.digest}`;
      const miss = await get(url);
      expect(miss.res.headers.get('x-cache')).toBe('MISS');
      await waitFor('the blob to be committed', () => blobCached(m, blob.digest));
      const hit = await get(url);
      expect(hit.res.headers.get('x-cache')).toBe('HIT');
      expect(sha256(hit.body)).toBe(blob.digest);
      // Over the quota: medium's three 256 KiB layers.
      await pullImage(m.url, upstream.fixtures, image('medium'));
      await settle(m);
      expect(evictionReports(m).reduce((n, r) => n + r.evicted, 0)).toBeGreaterThan(0);

      const res = await fetch(`${m.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await res.text();
      const usage = (await admin(m.url, 'GET', '/usage')).json;

      expect(metric(text, 'ocimirror_http_requests_total', { route: 'blob', method: 'GET', status: '200', cache: 'MISS' })).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'ocimirror_http_requests_total', { route: 'blob', method: 'GET', status: '200', cache: 'HIT' })).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'ocimirror_http_requests_total', { route: 'manifest', status: '200' })).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'ocimirror_served_bytes_total', { cache: 'MISS' })).toBeGreaterThanOrEqual(blob.size);
      expect(metric(text, 'ocimirror_served_bytes_total', { cache: 'HIT' })).toBeGreaterThanOrEqual(blob.size);
      expect(metric(text, 'ocimirror_upstream_requests_total', { upstream: 'test' })).toBeGreaterThanOrEqual(upstream.fixtures.allBlobs(image('medium')).length + 1);
      expect(metric(text, 'ocimirror_upstream_bytes_total', { upstream: 'test' })).toBeGreaterThanOrEqual(blob.size);
      expect(metric(text, 'ocimirror_fill_duration_seconds_count', { upstream: 'test', result: 'committed' })).toBeGreaterThanOrEqual(5);
      expect(metric(text, 'ocimirror_cache_bytes')).toBe(usage.bytes);
      expect(metric(text, 'ocimirror_cache_blobs')).toBe(usage.blobs);
      expect(usage.bytes).toBeLessThanOrEqual(512 * 1024);
      for (const type of JOB_TYPES) for (const state of JOB_STATES) expect(metric(text, 'ocimirror_jobs', { type, state }), `${type}/${state}`).toBeDefined();
      expect(metric(text, 'ocimirror_jobs', { type: 'evict', state: 'done' })).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'ocimirror_job_queue_depth')).toBe(0);
      expect(metric(text, 'ocimirror_evictions_total', { reason: 'quota' })).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'ocimirror_evicted_bytes_total', { reason: 'quota' })).toBeGreaterThan(0);
    });
  });

  describe('ocimirror gc', () => {
    it('--offline removes a file without a row and a row without a file, and nothing else', SLOW, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-bg-gc-'));
      try {
        const dataDir = path.join(dir, 'data');
        const v1 = image('small:v1');
        const m = await startTestMirror(mirrorConfig(upstream.url), { dataDir });
        try {
          await pullImage(m.url, upstream.fixtures, v1);
          await settle(m);
        } finally {
          await m.stop();
        }

        const paths = dataPaths(dataDir);
        const strayBytes = randomBytes(4096);
        const stray = sha256(strayBytes);
        const strayFile = paths.blobFile(stray.slice(7));
        await mkdir(path.dirname(strayFile), { recursive: true });
        await writeFile(strayFile, strayBytes);
        const ghost = sha256(randomBytes(32));
        const metadata = new Metadata(paths.database);
        try {
          metadata.putBlob({ digest: ghost, size: 12345, mediaType: 'application/octet-stream' }, { upstream: 'test', repo: 'small' });
        } finally {
          metadata.close();
        }

        const configFile = path.join(dir, 'gc.yaml');
        await writeFile(configFile, stringify({ storage: { path: dataDir } } satisfies RawConfig));
        const run = await runCli(['gc', '--offline', '--config', configFile, '--data', dataDir], {}, 120_000);
        expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
        const report = JSON.parse(run.stdout) as { reconciled: { rowsWithoutFile: number; filesWithoutRow: number }; rowsWithoutFile: number; filesWithoutRow: number };
        // Start-up reconcile or the gc pass itself: one of them found each.
        expect(report.reconciled.rowsWithoutFile + report.rowsWithoutFile).toBe(1);
        expect(report.reconciled.filesWithoutRow + report.filesWithoutRow).toBe(1);

        expect(existsSync(strayFile)).toBe(false);
        const after = new Metadata(paths.database);
        try {
          expect(after.getBlob(ghost)).toBeUndefined();
          expect(after.hasLink('test', 'small', ghost)).toBe(false);
          for (const blob of upstream.fixtures.allBlobs(v1)) {
            expect(after.getBlob(blob.digest), blob.digest).toBeDefined();
            expect(blobFileExists(dataDir, blob.digest)).toBe(true);
          }
          expect(after.getManifest(v1.manifest.digest)).toBeDefined();
        } finally {
          after.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});
