/**
 * @module test/integration/hosted-push
 * Hosted repositories through the real HTTP surface: skopeo copies images (one platform, a whole
 * index with --all, precomputed digests) from the real upstream registry into a hosted registry
 * and back out byte-identical; curl-level sequences cover the distribution-spec v1.1 push API
 * (chunked uploads, 416 on a gap, status, cancel, mounts, manifest checks, deletes, tags
 * pagination, referrers) and the resumption of an upload across a restart.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { skopeoCopy, skopeoInspectRaw } from '../helpers/skopeo.ts';
import { describeWithTools } from '../helpers/tools.ts';
import { MANIFEST_ACCEPT, MEDIA_TYPES } from '../helpers/images.ts';
import { startPodman } from '../helpers/podman.ts';
import { runCommand } from '../helpers/containerd.ts';
import { execFileSync } from 'node:child_process';

const SLOW = { timeout: 120_000 };
const HOSTED = 'registry.internal';

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describeWithTools(['docker-registry', 'skopeo', 'curl'], 'hosted repositories', () => {
  let upstream: Upstream;
  let m: TestMirror;
  let host: string;
  let src: string;
  let work: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url, { hosted: [{ name: HOSTED }, { name: 'small.internal', maxSize: '64KiB' }] } as never));
    host = new URL(m.url).host;
    src = new URL(upstream.registry.url).host;
    work = await mkdtemp(path.join(tmpdir(), 'ocimirror-hosted-'));
  }, SLOW.timeout);
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const v2 = (p: string) => `${m.url}/v2/${HOSTED}/${p}`;

  /** One blob pushed POST-then-PUT; its digest. */
  async function pushBlob(repo: string, body: Buffer): Promise<string> {
    const digest = sha256(body);
    const post = await fetch(v2(`${repo}/blobs/uploads/`), { method: 'POST' });
    expect(post.status).toBe(202);
    const put = await fetch(new URL(`${post.headers.get('location')}${post.headers.get('location')!.includes('?') ? '&' : '?'}digest=${digest}`, m.url), { method: 'PUT', body });
    expect(put.status, await put.clone().text()).toBe(201);
    return digest;
  }

  /** An image manifest over `layers` (pushed first) and a config; its bytes and digest. */
  async function pushImage(repo: string, tag: string, extra: Record<string, unknown> = {}): Promise<{ digest: string; bytes: Buffer }> {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', tag }));
    const layer = Buffer.from(`layer of ${repo}:${tag}`);
    const [configDigest, layerDigest] = [await pushBlob(repo, config), await pushBlob(repo, layer)];
    const bytes = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: MEDIA_TYPES.ociConfig, digest: configDigest, size: config.length },
      layers: [{ mediaType: MEDIA_TYPES.ociLayer, digest: layerDigest, size: layer.length }],
      ...extra,
    }));
    const res = await fetch(v2(`${repo}/manifests/${tag}`), { method: 'PUT', headers: { 'content-type': MEDIA_TYPES.ociManifest }, body: bytes });
    expect(res.status, await res.clone().text()).toBe(201);
    expect(res.headers.get('docker-content-digest')).toBe(sha256(bytes));
    return { digest: sha256(bytes), bytes };
  }

  it('takes an image copied in by skopeo and gives the same bytes back', SLOW, async () => {
    await skopeoCopy(`docker://${src}/medium:latest`, `docker://${host}/${HOSTED}/team/medium:1.0`, { preserveDigests: true });
    const source = await skopeoInspectRaw(`docker://${src}/medium:latest`);
    const pushed = await skopeoInspectRaw(`docker://${host}/${HOSTED}/team/medium:1.0`);
    expect(sha256(pushed)).toBe(sha256(source));
    // Out again, every layer verified by skopeo against its digest.
    const out = path.join(work, 'medium');
    await skopeoCopy(`docker://${host}/${HOSTED}/team/medium:1.0`, `dir:${out}`);
    const image = upstream.fixtures.image('medium');
    for (const layer of image.manifest.layers) expect(sha256(await readFile(path.join(out, layer.digest.slice(7))))).toBe(layer.digest);
  });

  it('takes a multi-platform index with skopeo --all and precomputed digests', SLOW, async () => {
    await skopeoCopy(`docker://${src}/multi:latest`, `docker://${host}/${HOSTED}/team/multi:latest`, { all: true, preserveDigests: true, extraArgs: ['--dest-precompute-digests'] });
    const index = await skopeoInspectRaw(`docker://${host}/${HOSTED}/team/multi:latest`);
    expect(sha256(index)).toBe(upstream.fixtures.image('multi').manifest.digest);
    // A second copy finds every blob already there (HEAD), and still ends with the same index.
    await skopeoCopy(`docker://${src}/multi:latest`, `docker://${host}/${HOSTED}/team/multi:again`, { all: true, preserveDigests: true, extraArgs: ['--dest-precompute-digests'] });
    const res = await fetch(v2('team/multi/manifests/again'), { headers: { accept: MANIFEST_ACCEPT } });
    expect(res.headers.get('docker-content-digest')).toBe(sha256(index));
  });

  it('uploads in ordered chunks, answers 416 with the current Range for a gap, and reports status', async () => {
    const blob = Buffer.from('0123456789abcdefghij');
    const post = await fetch(v2('chunks/blobs/uploads/'), { method: 'POST' });
    expect(post.status).toBe(202);
    const location = new URL(post.headers.get('location')!, m.url);
    expect(post.headers.get('range')).toBe('0-0');
    const patch = (body: Buffer, range: string) => fetch(location, { method: 'PATCH', headers: { 'content-range': range, 'content-type': 'application/octet-stream' }, body });
    const first = await patch(blob.subarray(0, 8), '0-7');
    expect(first.status).toBe(202);
    expect(first.headers.get('range')).toBe('0-7');
    const gap = await patch(blob.subarray(10), '10-19');
    expect(gap.status).toBe(416);
    expect(gap.headers.get('range')).toBe('0-7');
    const status = await fetch(location);
    expect(status.status).toBe(204);
    expect(status.headers.get('range')).toBe('0-7');
    expect((await patch(blob.subarray(8, 16), '8-15')).status).toBe(202);
    const put = await fetch(`${location.href}${location.search ? '&' : '?'}digest=${sha256(blob)}`, { method: 'PUT', headers: { 'content-range': '16-19' }, body: blob.subarray(16) });
    expect(put.status).toBe(201);
    expect(put.headers.get('location')).toBe(`/v2/${HOSTED}/chunks/blobs/${sha256(blob)}`);
    const get = await fetch(v2(`chunks/blobs/${sha256(blob)}`));
    expect(Buffer.from(await get.arrayBuffer())).toEqual(blob);
    const ranged = await fetch(v2(`chunks/blobs/${sha256(blob)}`), { headers: { range: 'bytes=2-5' } });
    expect(ranged.status).toBe(206);
    expect(await ranged.text()).toBe('2345');
  });

  it('runs a chunked upload, a mount, referrers and deletes as plain curl sequences', SLOW, async () => {
    /** curl -i: status, headers (lower-cased) and body of one request. */
    const curl = async (args: string[]) => {
      const r = await runCommand('curl', ['-s', '-i', ...args]);
      expect(r.code, r.stderr).toBe(0);
      const text = r.stdout;
      const split = text.indexOf('\r\n\r\n');
      const head = text.slice(0, split).split('\r\n');
      const headers = Object.fromEntries(head.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      return { status: Number(head[0]?.split(' ')[1]), headers, body: text.slice(split + 4) };
    };
    const blob = Buffer.from('0123456789abcdefghijklmnopqrst');
    const file = (name: string, bytes: Buffer) => writeFile(path.join(work, name), bytes).then(() => path.join(work, name));
    const [a, b, c] = [await file('a', blob.subarray(0, 10)), await file('b', blob.subarray(10, 20)), await file('c', blob.subarray(20))];
    const post = await curl(['-X', 'POST', v2('curl/src/blobs/uploads/')]);
    expect(post.status).toBe(202);
    const location = new URL(post.headers.location!, m.url).href;
    const patch = (range: string, f: string) => curl(['-X', 'PATCH', '-H', 'Content-Type: application/octet-stream', '-H', `Content-Range: ${range}`, '--data-binary', `@${f}`, location]);
    expect((await patch('0-9', a)).headers.range).toBe('0-9');
    const gap = await patch('20-29', c);
    expect([gap.status, gap.headers.range]).toEqual([416, '0-9']);
    expect((await patch('10-19', b)).status).toBe(202);
    const put = await curl(['-X', 'PUT', '-H', 'Content-Range: 20-29', '--data-binary', `@${c}`, `${location}?digest=${sha256(blob)}`]);
    expect([put.status, put.headers['docker-content-digest']]).toEqual([201, sha256(blob)]);
    const mount = await curl(['-X', 'POST', `${v2('curl/dst/blobs/uploads/')}?mount=${sha256(blob)}&from=${HOSTED}/curl/src`]);
    expect([mount.status, mount.headers.location]).toEqual([201, `/v2/${HOSTED}/curl/dst/blobs/${sha256(blob)}`]);
    // A manifest with that blob as its only layer, and an artifact about it.
    const config = Buffer.from('{}');
    await curl(['-X', 'POST', '--data-binary', '{}', `${v2('curl/dst/blobs/uploads/')}?digest=${sha256(config)}`]);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: { mediaType: MEDIA_TYPES.ociConfig, digest: sha256(config), size: 2 }, layers: [{ mediaType: MEDIA_TYPES.ociLayer, digest: sha256(blob), size: blob.length }] }));
    const pushed = await curl(['-X', 'PUT', '-H', `Content-Type: ${MEDIA_TYPES.ociManifest}`, '--data-binary', `@${await file('m.json', manifest)}`, v2('curl/dst/manifests/v1')]);
    expect(pushed.status).toBe(201);
    const sbom = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, artifactType: 'application/vnd.example.sbom', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(config), size: 2 }, layers: [], subject: { mediaType: MEDIA_TYPES.ociManifest, digest: sha256(manifest), size: manifest.length } }));
    const referrer = await curl(['-X', 'PUT', '-H', `Content-Type: ${MEDIA_TYPES.ociManifest}`, '--data-binary', `@${await file('sbom.json', sbom)}`, v2(`curl/dst/manifests/${sha256(sbom)}`)]);
    expect(referrer.headers['oci-subject']).toBe(sha256(manifest));
    const listed = await curl([v2(`curl/dst/referrers/${sha256(manifest)}?artifactType=application/vnd.example.sbom`)]);
    expect(listed.headers['oci-filters-applied']).toBe('artifactType');
    expect((JSON.parse(listed.body) as { manifests: Array<{ digest: string }> }).manifests.map((d) => d.digest)).toEqual([sha256(sbom)]);
    expect((await curl(['-X', 'DELETE', v2(`curl/dst/manifests/${sha256(sbom)}`)])).status).toBe(202);
    expect((await curl(['-X', 'DELETE', v2(`curl/src/blobs/${sha256(blob)}`)])).status).toBe(202);
    expect((await curl(['-I', v2(`curl/src/blobs/${sha256(blob)}`)])).status).toBe(404);
    expect((await curl(['-I', v2(`curl/dst/blobs/${sha256(blob)}`)])).status).toBe(200); // still mounted there
  });

  it('refuses a wrong digest with DIGEST_INVALID and commits nothing', async () => {
    const post = await fetch(v2('bad/blobs/uploads/'), { method: 'POST' });
    const wrong = sha256('something else');
    const put = await fetch(new URL(`${post.headers.get('location')}?digest=${wrong}`, m.url), { method: 'PUT', body: Buffer.from('the real bytes') });
    expect(put.status).toBe(400);
    expect(((await put.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe('DIGEST_INVALID');
    expect((await fetch(v2(`bad/blobs/${wrong}`), { method: 'HEAD' })).status).toBe(404);
    expect((await fetch(v2(`bad/blobs/${sha256('the real bytes')}`), { method: 'HEAD' })).status).toBe(404);
  });

  it('pushes a blob in a single POST and cancels an upload with DELETE', async () => {
    const body = Buffer.from('monolithic');
    const res = await fetch(v2(`mono/blobs/uploads/?digest=${sha256(body)}`), { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });
    expect(res.status).toBe(201);
    expect(res.headers.get('docker-content-digest')).toBe(sha256(body));
    const post = await fetch(v2('mono/blobs/uploads/'), { method: 'POST' });
    const location = new URL(post.headers.get('location')!, m.url);
    expect((await fetch(location, { method: 'DELETE' })).status).toBe(204);
    const gone = await fetch(location);
    expect(gone.status).toBe(404);
    expect(((await gone.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('mounts a blob from another repository, and falls back to an upload when it cannot', async () => {
    const digest = await pushBlob('mount-src', Buffer.from('shared layer'));
    const mounted = await fetch(v2(`mount-dst/blobs/uploads/?mount=${digest}&from=${HOSTED}/mount-src`), { method: 'POST' });
    expect(mounted.status).toBe(201);
    expect(mounted.headers.get('location')).toBe(`/v2/${HOSTED}/mount-dst/blobs/${digest}`);
    expect((await fetch(v2(`mount-dst/blobs/${digest}`), { method: 'HEAD' })).status).toBe(200);
    const missing = await fetch(v2(`mount-dst/blobs/uploads/?mount=${sha256('nowhere')}&from=${HOSTED}/mount-src`), { method: 'POST' });
    expect(missing.status).toBe(202);
    expect(missing.headers.get('location')).toContain('/blobs/uploads/');
  });

  it('refuses manifests that reference missing blobs, are too large or are not JSON', async () => {
    const put = (body: Buffer | string, type: string = MEDIA_TYPES.ociManifest) => fetch(v2('checks/manifests/v1'), { method: 'PUT', headers: { 'content-type': type }, body });
    const dangling = JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: { mediaType: MEDIA_TYPES.ociConfig, digest: sha256('no config'), size: 9 }, layers: [] });
    const res = await put(dangling);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { errors: Array<{ code: string; detail?: { digest?: string } }> };
    expect(body.errors[0]).toMatchObject({ code: 'MANIFEST_BLOB_UNKNOWN', detail: { digest: sha256('no config') } });
    const large = await put(Buffer.alloc(4 * 1024 * 1024 + 1, 0x20));
    expect(large.status).toBe(413);
    expect(((await large.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe('MANIFEST_INVALID');
    const notJson = await put('{not json');
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe('MANIFEST_INVALID');
    expect((await fetch(v2('checks/manifests/v1'), { method: 'HEAD' })).status).toBe(404);
  });

  it('lists tags page by page with Link headers, and deletes by tag and by digest', async () => {
    const tags = ['a', 'b', 'c', 'd'];
    const pushed = [];
    for (const tag of tags) pushed.push(await pushImage('paged', tag));
    const first = await fetch(v2('paged/tags/list?n=2'));
    expect(await first.json()).toEqual({ name: `${HOSTED}/paged`, tags: ['a', 'b'] });
    const link = first.headers.get('link');
    expect(link).toBe(`</v2/${HOSTED}/paged/tags/list?n=2&last=b>; rel="next"`);
    const second = await fetch(new URL(link!.slice(1, link!.indexOf('>')), m.url));
    expect(((await second.json()) as { tags: string[] }).tags).toEqual(['c', 'd']);
    expect(second.headers.get('link')).toBeNull();

    expect((await fetch(v2('paged/manifests/a'), { method: 'DELETE' })).status).toBe(202);
    expect((await fetch(v2('paged/manifests/a'))).status).toBe(404);
    expect((await fetch(v2(`paged/manifests/${pushed[0]!.digest}`))).status).toBe(200); // the manifest stays
    expect((await fetch(v2(`paged/manifests/${pushed[1]!.digest}`), { method: 'DELETE' })).status).toBe(202);
    expect((await fetch(v2('paged/manifests/b'))).status).toBe(404); // its tag went with it
    expect(((await (await fetch(v2('paged/tags/list'))).json()) as { tags: string[] }).tags).toEqual(['c', 'd']);
  });

  it('answers referrers with OCI-Subject on push and artifactType filtering', async () => {
    const subject = await pushImage('signed', 'v1');
    const descriptor = { mediaType: MEDIA_TYPES.ociManifest, digest: subject.digest, size: subject.bytes.length };
    const emptyConfig = Buffer.from('{}');
    const configDigest = await pushBlob('signed', emptyConfig);
    const referrer = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      artifactType: 'application/vnd.example.sbom',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: configDigest, size: 2 },
      layers: [],
      subject: descriptor,
      annotations: { 'org.example': 'yes' },
    }));
    const put = await fetch(v2(`signed/manifests/${sha256(referrer)}`), { method: 'PUT', headers: { 'content-type': MEDIA_TYPES.ociManifest }, body: referrer });
    expect(put.status).toBe(201);
    expect(put.headers.get('oci-subject')).toBe(subject.digest);
    const list = await fetch(v2(`signed/referrers/${subject.digest}`));
    expect(list.headers.get('content-type')).toBe(MEDIA_TYPES.ociIndex);
    const index = (await list.json()) as { manifests: Array<{ digest: string; artifactType: string; annotations?: Record<string, string> }> };
    expect(index.manifests).toEqual([expect.objectContaining({ digest: sha256(referrer), artifactType: 'application/vnd.example.sbom', annotations: { 'org.example': 'yes' } })]);
    const filtered = await fetch(v2(`signed/referrers/${subject.digest}?artifactType=application/vnd.example.other`));
    expect(filtered.headers.get('oci-filters-applied')).toBe('artifactType');
    expect(((await filtered.json()) as { manifests: unknown[] }).manifests).toEqual([]);
  });

  it('refuses pushes over a hosted registry quota with 507 DENIED and keeps what fits', async () => {
    const base = `${m.url}/v2/small.internal/q`;
    const fits = Buffer.alloc(40 * 1024, 1);
    const first = await fetch(`${base}/blobs/uploads/?digest=${sha256(fits)}`, { method: 'POST', body: fits });
    expect(first.status).toBe(201);
    const over = Buffer.alloc(40 * 1024, 2);
    const second = await fetch(`${base}/blobs/uploads/?digest=${sha256(over)}`, { method: 'POST', body: over });
    expect(second.status).toBe(507);
    expect(((await second.json()) as { errors: Array<{ code: string; message: string }> }).errors[0]).toMatchObject({ code: 'DENIED', message: expect.stringContaining('quota') });
    expect((await fetch(`${base}/blobs/${sha256(over)}`, { method: 'HEAD' })).status).toBe(404);
    expect((await fetch(`${base}/blobs/${sha256(fits)}`, { method: 'HEAD' })).status).toBe(200);
  });

  it('lists hosted repositories in _catalog, page by page', async () => {
    const all = (await (await fetch(`${m.url}/v2/_catalog`)).json()) as { repositories: string[] };
    expect(all.repositories).toEqual([...all.repositories].sort());
    expect(all.repositories).toEqual(expect.arrayContaining([`${HOSTED}/team/medium`, `${HOSTED}/team/multi`, `${HOSTED}/chunks`]));
    expect(all.repositories.every((r) => r.startsWith(`${HOSTED}/`) || r.startsWith('small.internal/'))).toBe(true);
    const first = await fetch(`${m.url}/v2/_catalog?n=2`);
    const page = (await first.json()) as { repositories: string[] };
    expect(page.repositories).toEqual(all.repositories.slice(0, 2));
    expect(first.headers.get('link')).toBe(`</v2/_catalog?n=2&last=${encodeURIComponent(all.repositories[1]!)}>; rel="next"`);
    expect((await fetch(`${m.url}/v2/_catalog?n=x`)).status).toBe(400);
  });

  it('keeps upstream repositories read-only', async () => {
    const res = await fetch(`${m.url}/v2/docker.io/library/alpine/blobs/uploads/`, { method: 'POST' });
    expect(res.status).toBe(405);
    expect(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe('UNSUPPORTED');
  });
});

/** Writes an htpasswd file in `dir` with the accounts `ci` (ci-password) and `node` (node-password); returns its path. */
function writeAccounts(dir: string): string {
  const htpasswd = path.join(dir, 'htpasswd');
  execFileSync('htpasswd', ['-Bbc', htpasswd, 'ci', 'ci-password']);
  execFileSync('htpasswd', ['-Bb', htpasswd, 'node', 'node-password']);
  return htpasswd;
}

describeWithTools(['docker-registry', 'podman', 'skopeo', 'htpasswd'], 'hosted repositories with podman and accounts', () => {
  it('takes an image podman pushes with a push account and gives it to podman with a pull account', SLOW, async () => {
    const upstream = await startUpstream();
    const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-podman-auth-'));
    const htpasswd = writeAccounts(dir);
    const m = await startTestMirror(mirrorConfig(upstream.url, {
      hosted: [{ name: HOSTED }],
      auth: { htpasswd, rules: [{ accounts: ['ci'], repositories: [`${HOSTED}/**`], roles: ['push'] }, { accounts: ['node'], repositories: ['**'], roles: ['pull'] }] },
    } as never));
    const podman = await startPodman();
    try {
      const src = `${new URL(upstream.registry.url).host}/small:v1`;
      const dest = `${new URL(m.url).host}/${HOSTED}/team/podman:v1`;
      await podman.run(['pull', '--tls-verify=false', src]);
      // The token flow: 401 with the challenge, /auth/token with the push scope, then the upload.
      await expect(podman.run(['push', '--tls-verify=false', '--creds', 'node:node-password', src, `docker://${dest}`])).rejects.toThrow();
      await podman.run(['push', '--tls-verify=false', '--creds', 'ci:ci-password', src, `docker://${dest}`]);
      // What podman pushed checks out: skopeo verifies every blob against the manifest's digests.
      const raw = JSON.parse((await skopeoInspectRaw(`docker://${dest}`, { creds: 'node:node-password' })).toString()) as { layers: unknown[] };
      expect(raw.layers.length).toBe(upstream.fixtures.image('small:v1').manifest.layers.length);
      await podman.run(['rmi', '--all', '--force']);
      await podman.run(['pull', '--tls-verify=false', '--creds', 'node:node-password', dest]);
      expect(await podman.run(['images', '--format', '{{.Repository}}:{{.Tag}}'])).toContain(`${HOSTED}/team/podman:v1`);
    } finally {
      await podman.stop();
      await m.stop();
      await upstream.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describeWithTools(['docker-registry', 'skopeo', 'htpasswd'], 'hosted repositories with accounts', () => {
  it('lets push accounts push, refuses pull-only and anonymous clients, and leaves nothing behind', SLOW, async () => {
    const upstream = await startUpstream();
    const dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-hosted-auth-'));
    const htpasswd = writeAccounts(dir);
    const m = await startTestMirror(mirrorConfig(upstream.url, {
      hosted: [{ name: HOSTED }],
      auth: {
        htpasswd,
        rules: [
          { accounts: ['ci'], repositories: [`${HOSTED}/team/**`], roles: ['push'] },
          { accounts: ['node'], repositories: ['**'], roles: ['pull'] },
        ],
      },
    } as never));
    try {
      const host = new URL(m.url).host;
      const src = `docker://${new URL(upstream.registry.url).host}/small:v1`;
      // skopeo goes through the token flow (401 challenge, /auth/token with push scope).
      await skopeoCopy(src, `docker://${host}/${HOSTED}/team/app:v1`, { destCreds: 'ci:ci-password', preserveDigests: true });
      const pulled = await skopeoInspectRaw(`docker://${host}/${HOSTED}/team/app:v1`, { creds: 'node:node-password' });
      expect(sha256(pulled)).toBe(upstream.fixtures.image('small:v1').manifest.digest);
      // A pull-only account and an anonymous client may not start an upload; the push account may not write elsewhere.
      const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
      const post = (repo: string, authorization?: string) => fetch(`${m.url}/v2/${HOSTED}/${repo}/blobs/uploads/`, { method: 'POST', headers: authorization ? { authorization } : {} });
      expect((await post('team/app', basic('node', 'node-password'))).status).toBe(403);
      expect((await post('team/app')).status).toBe(401);
      expect((await post('other/app', basic('ci', 'ci-password'))).status).toBe(403);
      const del = await fetch(`${m.url}/v2/${HOSTED}/team/app/manifests/v1`, { method: 'DELETE', headers: { authorization: basic('ci', 'ci-password') } });
      expect(del.status).toBe(403); // deleting needs admin
      const uploads = await readdir(path.join(m.dataDir, 'uploads'));
      expect(uploads).toEqual([]);
      expect((await fetch(`${m.url}/v2/${HOSTED}/team/app/manifests/v1`, { headers: { authorization: basic('node', 'node-password'), accept: MANIFEST_ACCEPT } })).status).toBe(200);
      // _catalog lists what the caller may pull: nothing anonymous here, everything for node.
      expect((await fetch(`${m.url}/v2/_catalog`)).status).toBe(401);
      const listed = (await (await fetch(`${m.url}/v2/_catalog`, { headers: { authorization: basic('node', 'node-password') } })).json()) as { repositories: string[] };
      expect(listed.repositories).toEqual([`${HOSTED}/team/app`]);
    } finally {
      await m.stop();
      await upstream.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describeWithTools(['docker-registry'], 'hosted uploads across a restart', () => {
  it('resumes an upload after the mirror restarts', SLOW, async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'ocimirror-hosted-restart-'));
    const config = { listen: '127.0.0.1:0', upstreams: [], hosted: [{ name: HOSTED }], defaultUpstream: HOSTED } as never;
    const blob = Buffer.alloc(256 * 1024, 7);
    let m = await startTestMirror(config, { dataDir });
    try {
      const post = await fetch(`${m.url}/v2/team/app/blobs/uploads/`, { method: 'POST' });
      const location = post.headers.get('location')!;
      expect((await fetch(new URL(location, m.url), { method: 'PATCH', headers: { 'content-range': `0-${128 * 1024 - 1}` }, body: blob.subarray(0, 128 * 1024) })).status).toBe(202);
      await m.stop();
      m = await startTestMirror(config, { dataDir });
      const status = await fetch(new URL(location, m.url));
      expect(status.status).toBe(204);
      expect(status.headers.get('range')).toBe(`0-${128 * 1024 - 1}`);
      const put = await fetch(new URL(`${location}?digest=${sha256(blob)}`, m.url), { method: 'PUT', headers: { 'content-range': `${128 * 1024}-${blob.length - 1}` }, body: blob.subarray(128 * 1024) });
      expect(put.status).toBe(201);
      const back = await fetch(`${m.url}/v2/team/app/blobs/${sha256(blob)}`);
      expect(sha256(Buffer.from(await back.arrayBuffer()))).toBe(sha256(blob));
    } finally {
      await m.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
