/**
 * `ocimirror sync FILE` run as the real CLI against the real upstream: images land in the cache
 * under their own names (a mirror started on the data directory then serves them without asking
 * the upstream for a blob), a second run of an unchanged list costs one HEAD per tag and no blob,
 * a hosted destination with a prefix holds byte-identical images, tags are chosen by regex, semver
 * and latest, --dry-run copies nothing, failures are reported per image, and a bad file is a
 * usage error naming the key.
 */
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { EXIT } from '../../src/cli/cli-error.ts';
import type { RawConfig } from '../../src/config/schema.ts';
import type { SyncReport } from '../../src/sync/sync-report.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { runCli, sharedHubConfig, startTestMirror, type CliRun } from '../helpers/mirror.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { waitFor } from '../helpers/wait.ts';

const SLOW = { timeout: 60_000 };
const HOSTED = 'registry.internal';

let upstream: Upstream;
let work: string;

beforeAll(async () => {
  upstream = await startUpstream();
  work = await mkdtemp(path.join(tmpdir(), 'ocimirror-sync-'));
}, 120_000);

afterAll(async () => {
  await upstream?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

afterEach(() => upstream.proxy.reset());

interface Run extends CliRun {
  report: SyncReport;
  /** The JSON lines on stdout. */
  events: Array<Record<string, unknown>>;
}

let runs = 0;

/** A data directory and the config that points at it. */
async function dataDir(): Promise<{ dir: string; config: string; raw: RawConfig }> {
  const dir = path.join(work, `data-${++runs}`);
  const raw = sharedHubConfig(upstream.url, { hosted: [{ name: HOSTED }], storage: { path: dir } } as Partial<RawConfig>);
  const config = path.join(work, `config-${runs}.yaml`);
  await writeFile(config, stringify(raw));
  return { dir, config, raw };
}

async function sync(config: string, file: unknown, ...flags: string[]): Promise<Run> {
  const n = ++runs;
  const syncFile = path.join(work, `sync-${n}.yaml`);
  const reportFile = path.join(work, `report-${n}.json`);
  await writeFile(syncFile, typeof file === 'string' ? file : stringify(file));
  const run = await runCli(['sync', syncFile, '--config', config, '--report', reportFile, ...flags]);
  const events = run.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  let report = undefined as unknown as SyncReport;
  try {
    report = JSON.parse(await readFile(reportFile, 'utf8')) as SyncReport;
  } catch {
    /* no report: the run failed before syncing */
  }
  return { ...run, events, report };
}

function entry(report: SyncReport, source: string) {
  const found = report.images.find((i) => i.source === source);
  if (!found) throw new Error(`no report entry for ${source}: ${JSON.stringify(report.images.map((i) => i.source))}`);
  return found;
}

async function get(base: string, p: string, accept = MANIFEST_ACCEPT): Promise<{ status: number; cache: string | null; body: Buffer }> {
  const res = await fetch(`${base}${p}`, { headers: { accept } });
  return { status: res.status, cache: res.headers.get('x-cache'), body: Buffer.from(await res.arrayBuffer()) };
}

describe('ocimirror sync into the cache', () => {
  it('fills the cache under the source names, then a second run of the unchanged list costs one HEAD per tag and no blob', SLOW, async () => {
    const { dir, config, raw } = await dataDir();
    const file = { 'registry.example': { images: { small: ['v1'], multi: ['latest'] } }, 'docker.io': { images: { alpine: ['3.19'] } } };
    const first = await sync(config, file);
    expect(first.code, first.stderr).toBe(EXIT.ok);
    const small = upstream.fixtures.image('small:v1');
    const multi = upstream.fixtures.image('multi');
    const alpine = upstream.fixtures.image('library/alpine:3.19');
    expect(entry(first.report, 'registry.example/small:v1')).toMatchObject({ result: 'ok', digest: small.manifest.digest, blobsFetched: 4, destination: 'registry.example/small:v1' });
    expect(entry(first.report, 'registry.example/multi:latest')).toMatchObject({ result: 'ok', digest: multi.manifest.digest, blobsFetched: upstream.fixtures.allBlobs(multi).length });
    const alpineEntry = entry(first.report, 'docker.io/library/alpine:3.19');
    expect(alpineEntry).toMatchObject({ result: 'ok', digest: alpine.manifest.digest });
    expect(alpineEntry.bytes).toBe(upstream.fixtures.allBlobs(alpine).reduce((n, b) => n + b.size, 0));
    expect(first.report.totals).toMatchObject({ images: 3, ok: 3, failed: 0 });
    // Not a terminal: one JSON line per event, ending with the totals.
    expect(first.events.filter((e) => e.event === 'image-started')).toHaveLength(3);
    expect(first.events.filter((e) => e.event === 'image-done')).toHaveLength(3);
    expect(first.events.at(-1)).toMatchObject({ event: 'sync-done', images: 3, ok: 3, failed: 0 });

    upstream.proxy.reset();
    const second = await sync(config, file);
    expect(second.code, second.stderr).toBe(EXIT.ok);
    expect(second.report.images.map((i) => i.result)).toEqual(['skipped', 'skipped', 'skipped']);
    expect(second.report.totals.blobsFetched).toBe(0);
    expect(upstream.proxy.count({ pathIncludes: '/blobs/' })).toBe(0);
    expect(upstream.proxy.records.map((r) => `${r.method} ${r.path}`).sort()).toEqual([
      'HEAD /v2/library/alpine/manifests/3.19',
      'HEAD /v2/multi/manifests/latest',
      'HEAD /v2/small/manifests/v1',
    ]);

    upstream.proxy.reset();
    const mirror = await startTestMirror(raw, { dataDir: dir });
    try {
      const manifest = await get(mirror.url, '/v2/registry.example/small/manifests/v1');
      expect(manifest.status).toBe(200);
      expect(manifest.cache).toBe('HIT');
      expect(manifest.body.equals(small.manifest.bytes)).toBe(true);
      for (const blob of upstream.fixtures.allBlobs(small)) {
        const res = await get(mirror.url, `/v2/registry.example/small/blobs/${blob.digest}`, '*/*');
        expect(res.status).toBe(200);
        expect(res.cache).toBe('HIT');
        expect(res.body.equals(await readFile(upstream.fixtures.blobPath(blob.digest)))).toBe(true);
      }
      const arm = multi.manifest.children?.[1];
      expect((await get(mirror.url, `/v2/registry.example/multi/manifests/${arm?.digest}`)).cache).toBe('HIT');
      expect((await get(mirror.url, '/v2/docker.io/alpine/manifests/3.19')).cache).toBe('HIT');
      expect(upstream.proxy.count({ pathIncludes: '/blobs/' })).toBe(0);
      expect(upstream.proxy.records).toHaveLength(0);
    } finally {
      await mirror.stop();
    }
  });

  it('chooses tags by regex, semver and latest, and a dry run lists them with their digests and copies nothing', SLOW, async () => {
    const { config } = await dataDir();
    const file = {
      'registry.example': { 'images-by-semver': { small: '>= 2' }, 'images-by-tag-regex': { multi: '^lat' } },
      'docker.io': { images: { alpine: [] }, latest: 1 },
    };
    const run = await sync(config, file, '--dry-run');
    expect(run.code, run.stderr).toBe(EXIT.ok);
    expect(run.report.dryRun).toBe(true);
    expect(run.report.images.map((i) => i.source).sort()).toEqual([
      'docker.io/library/alpine:3.19',
      'registry.example/multi:latest',
      'registry.example/small:v2',
      'registry.example/small:v3',
    ]);
    expect(entry(run.report, 'registry.example/small:v3')).toMatchObject({ digest: upstream.fixtures.image('small:v3').manifest.digest, current: false, result: 'skipped' });
    expect(run.report.images.every((i) => i.current === false && i.blobsFetched === 0)).toBe(true);
    expect(upstream.proxy.count({ method: 'GET', pathIncludes: '/manifests/' })).toBe(0);
    expect(upstream.proxy.count({ pathIncludes: '/blobs/' })).toBe(0);

    // The same selection for real: afterwards a dry run says every image is current.
    const copied = await sync(config, file);
    expect(copied.report.totals).toMatchObject({ images: 4, ok: 4 });
    const again = await sync(config, file, '--dry-run');
    expect(again.report.images.map((i) => i.current)).toEqual([true, true, true, true]);
  });
});

describe('ocimirror sync into a hosted registry', () => {
  it('links the images into <prefix>/<source repo>, pullable back byte for byte, and copies a registry no upstream serves', SLOW, async () => {
    const { dir, config, raw } = await dataDir();
    const file = {
      'registry.example': { images: { small: ['v2'] } },
      'docker.io': { images: { alpine: ['latest'] }, platforms: ['linux/arm64'] },
      // Served by no configured upstream: reached through a client built from this entry.
      [upstream.proxy.host]: { images: { medium: ['latest'] }, 'tls-verify': false },
    };
    const run = await sync(config, file, '--dest', `${HOSTED}/mirrored`);
    expect(run.code, run.stderr).toBe(EXIT.ok);
    expect(run.report.dest).toBe(`${HOSTED}/mirrored`);
    expect(entry(run.report, 'registry.example/small:v2')).toMatchObject({ result: 'ok', destination: `${HOSTED}/mirrored/small:v2` });
    expect(entry(run.report, `${upstream.proxy.host}/medium:latest`)).toMatchObject({ result: 'ok', destination: `${HOSTED}/mirrored/medium:latest` });

    const again = await sync(config, file, '--dest', `${HOSTED}/mirrored`);
    expect(again.report.images.map((i) => i.result)).toEqual(['skipped', 'skipped', 'skipped']);

    const mirror = await startTestMirror(raw, { dataDir: dir });
    try {
      for (const [repo, tag] of [['small', 'v2'], ['medium', 'latest']] as const) {
        const image = upstream.fixtures.image(`${repo}:${tag}`);
        const manifest = await get(mirror.url, `/v2/${HOSTED}/mirrored/${repo}/manifests/${tag}`);
        expect(manifest.status).toBe(200);
        expect(manifest.body.equals(image.manifest.bytes)).toBe(true);
        for (const blob of upstream.fixtures.allBlobs(image)) {
          const res = await get(mirror.url, `/v2/${HOSTED}/mirrored/${repo}/blobs/${blob.digest}`, '*/*');
          expect(res.status).toBe(200);
          expect(res.body.equals(await readFile(upstream.fixtures.blobPath(blob.digest)))).toBe(true);
        }
      }
      const alpine = upstream.fixtures.image('library/alpine');
      const index = await get(mirror.url, `/v2/${HOSTED}/mirrored/library/alpine/manifests/latest`);
      expect(index.body.equals(alpine.manifest.bytes)).toBe(true);
      const [amd64, arm64] = alpine.manifest.children ?? [];
      expect((await get(mirror.url, `/v2/${HOSTED}/mirrored/library/alpine/manifests/${arm64?.digest}`)).status).toBe(200);
      // Only the platform the file asked for was copied.
      expect((await get(mirror.url, `/v2/${HOSTED}/mirrored/library/alpine/manifests/${amd64?.digest}`)).status).toBe(404);
    } finally {
      await mirror.stop();
    }
  });
});

describe('ocimirror sync failures', () => {
  it('with --keep-going reports the missing image and the unserved registry as failed, copies the rest and exits 1', SLOW, async () => {
    const { config } = await dataDir();
    const file = {
      'registry.example': { images: { small: ['nope', 'v1'] } },
      'unknown.example': { images: { app: ['v1'] } },
    };
    const run = await sync(config, file, '--keep-going');
    expect(run.code, run.stderr).toBe(EXIT.jobFailed);
    expect(run.report.totals).toMatchObject({ images: 3, ok: 1, failed: 2 });
    expect(entry(run.report, 'registry.example/small:nope')).toMatchObject({ result: 'failed', digest: null });
    expect(entry(run.report, 'registry.example/small:nope').error).toMatch(/not found/);
    expect(entry(run.report, 'registry.example/small:v1').result).toBe('ok');
    const unserved = entry(run.report, 'unknown.example/app');
    expect(unserved.result).toBe('failed');
    expect(unserved.error).toContain('registry unknown.example is not served by any configured upstream');
    expect(unserved.error).toContain('upstreams[].registries');
  });

  it('stops at the first failure without --keep-going', SLOW, async () => {
    const { config } = await dataDir();
    const run = await sync(config, { 'registry.example': { images: { small: ['nope', 'v1'] } } });
    expect(run.code, run.stderr).toBe(EXIT.jobFailed);
    expect(run.report.stoppedEarly).toBe(true);
    expect(run.report.images.map((i) => [i.source, i.result])).toEqual([['registry.example/small:nope', 'failed']]);
    expect(upstream.proxy.count({ pathIncludes: '/blobs/' })).toBe(0);
  });

  it('refuses a malformed sync file with the key path and exit code 2, before opening the data directory', SLOW, async () => {
    const { config } = await dataDir();
    const run = await sync(config, { 'docker.io': { 'images-by-semver': { alpine: 'not a range!' }, latest: 'many' } });
    expect(run.code).toBe(EXIT.usage);
    expect(run.stderr).toContain('docker.io.images-by-semver.alpine: invalid semver range');
    expect(run.stderr).toContain('docker.io.latest:');
    expect(run.report).toBeUndefined();
  });
});

describe('sync jobs in a running mirror', () => {
  const TOKEN = 'sync-admin-token-0123456789';
  const admin = (base: string, p: string, init: RequestInit = {}) =>
    fetch(`${base}/admin/v1${p}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...init.headers } });

  it('runs a sync: entry of the config at start-up, into a hosted registry', SLOW, async () => {
    const listFile = path.join(work, 'scheduled.yaml');
    await writeFile(listFile, stringify({ 'registry.example': { images: { small: ['v1'] } } }));
    const m = await startTestMirror(sharedHubConfig(upstream.url, { hosted: [{ name: HOSTED }], admin: { token: TOKEN }, sync: [{ file: listFile, dest: `${HOSTED}/mirrored`, interval: '1h' }] } as Partial<RawConfig>));
    try {
      let job: { state: string; result?: SyncReport } | undefined;
      await waitFor('the scheduled sync job to finish', async () => {
        const jobs = (await (await admin(m.url, '/jobs?type=sync')).json()) as { jobs: Array<{ state: string; result?: SyncReport }> };
        job = jobs.jobs[0];
        return job?.state === 'done';
      });
      expect(job?.result?.images.map((i) => [i.source, i.result])).toEqual([['registry.example/small:v1', 'ok']]);
      const pulled = await get(m.url, `/v2/${HOSTED}/mirrored/small/manifests/v1`);
      expect(pulled.status).toBe(200);
      expect(pulled.body.equals(upstream.fixtures.image('small:v1').manifest.bytes)).toBe(true);
    } finally {
      await m.stop();
    }
  });

  it('runs `ocimirror sync --url` as a job of the running mirror and reports like the in-process sync', SLOW, async () => {
    const m = await startTestMirror(sharedHubConfig(upstream.url, { hosted: [{ name: HOSTED }], admin: { token: TOKEN } } as Partial<RawConfig>));
    try {
      const listFile = path.join(work, 'remote.yaml');
      const reportFile = path.join(work, 'remote-report.json');
      await writeFile(listFile, stringify({ 'registry.example': { images: { small: ['v2'], nothere: ['v1'] } } }));
      const run = await runCli(['sync', listFile, '--url', m.url, '--token', TOKEN, '--keep-going', '--report', reportFile]);
      expect(run.code, run.stderr).toBe(EXIT.jobFailed); // one image is missing upstream
      const report = JSON.parse(await readFile(reportFile, 'utf8')) as SyncReport;
      expect(entry(report, 'registry.example/small:v2').result).toBe('ok');
      expect(entry(report, 'registry.example/nothere:v1').result).toBe('failed');
      upstream.proxy.reset();
      const hit = await get(m.url, '/v2/registry.example/small/manifests/v2');
      expect(hit.cache).toBe('HIT');
      // A list the mirror cannot read is refused at once, naming the key.
      const bad = await admin(m.url, '/sync', { method: 'POST', body: JSON.stringify({ yaml: 'docker.io:\n  images-by-semver:\n    alpine: "not a range"\n' }) });
      expect(bad.status).toBe(400);
      expect(await bad.text()).toContain('docker.io.images-by-semver.alpine');
    } finally {
      await m.stop();
    }
  });
});
