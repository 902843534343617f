/**
 * The console's browse pages on the real mirror against the real upstream, after pulling images
 * through it: the overview (usage against the quota, the traffic charts, the upstream table), the
 * images page (registries, repositories, search, pagination links), a repository's tags and a
 * tag's page (digest, layers or platforms, the three pull commands, which do pull through the
 * mirror as written, and the action forms for an admin). Requests carry the admin token. A
 * viewer whose rules let it pull one repository sees that one alone: in the list, its count,
 * search, and its pages; the others' pages are 404 to it and 200 to an admin.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeWithTools } from '../helpers/tools.ts';
import { waitFor } from '../helpers/wait.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { mirrorConfig, startTestMirror, type TestMirror } from '../helpers/mirror.ts';
import { pullImage } from '../helpers/pull.ts';
import { MANIFEST_ACCEPT } from '../helpers/images.ts';
import { writeHtpasswd } from '../helpers/accounts.ts';

const ADMIN_TOKEN = 'console-browse-admin-token-0123456789';
const SLOW = { timeout: 120_000 };
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** What a pull command's image reference means to the mirror: the /v2/ path it requests, and the ns containerd adds. */
const unescape = (html: string) => html.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>');

describeWithTools(['docker-registry'], 'console browse pages', () => {
  let upstream: Upstream;
  let m: TestMirror;
  let host: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    m = await startTestMirror(mirrorConfig(upstream.url, { admin: { token: ADMIN_TOKEN }, storage: { maxSize: '1GiB', lowWatermark: '80%' } } as never));
    host = new URL(m.url).host;
    const f = upstream.fixtures;
    for (const ref of ['small:v1', 'small:latest', 'medium', 'multi']) await pullImage(m.url, f, f.image(ref), { tag: ref.includes(':') ? ref.split(':')[1] : 'latest' });
  }, SLOW.timeout);
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
  });

  async function page(pathname: string): Promise<string> {
    const res = await fetch(`${m.url}${pathname}`, { headers: auth, redirect: 'manual' });
    const body = await res.text();
    expect(res.status, `${pathname}: ${body.slice(0, 300)}`).toBe(200);
    expect(body).toContain('<main id="main"');
    expect(body).toMatch(/<h1>/);
    return body;
  }

  it('shows the cache against its quota, what it holds and every upstream on the overview', async () => {
    // Fills commit just after their clients got the last byte: count once they all did.
    await waitFor('the fills committed', () => m.mirror.storage.blobs.activeFills === 0, 10_000);
    const body = await page('/console/');
    const usage = m.mirror.storage.metadata.usage.current()!;
    expect(usage.blobs).toBeGreaterThan(0);
    expect(body).toMatch(/<p data-usage[^>]*>.*<svg role="img" aria-label="Cache size against the quota: /s);
    expect(body).toContain('of 1.0 GiB');
    expect(body).toContain('low watermark 819.2 MiB');
    expect(body).toMatch(new RegExp(`<dd data-blobs[^>]*>${usage.blobs.toLocaleString('en-US')} \\(`));
    expect(body).toMatch(new RegExp(`<dd data-manifests[^>]*>${usage.manifests.toLocaleString('en-US')} \\(`));
    expect(body).toMatch(/<tr data-upstream="test">.*?<span[^>]*data-upstream-state[^>]*>healthy</s);
    expect(body).toContain('data-upstream="hub"');
  });

  it('draws the traffic history of the last hour, day and week as charts', async () => {
    // Needs the mirror to record it (TimeSeries wired in src/mirror.ts and fed by the server).
    const hour = await page('/console/');
    for (const id of ['chart-hit-ratio', 'chart-bytes', 'chart-hit-miss']) expect(hour).toMatch(new RegExp(`<figure class="chart" id="${id}"><svg role="img"`));
    expect(hour).toMatch(/<p data-history-summary[^>]*>Last hour: [^<]*served from the cache[^<]*; [\d,]+ of [\d,]+ requests were served from the cache/);
    const week = await page('/console/?window=week');
    expect(week).toContain('Traffic: last week (per 2 hours)');
  });

  it('lists the registries and the repositories pulled, with their tag counts and size bars', async () => {
    const body = await page('/console/images');
    expect(body).toMatch(/<tr data-registry="test">.*?registry\.test.*?<td class="num">3<\/td>/s);
    for (const repo of ['medium', 'multi', 'small']) expect(body).toContain(`<tr data-repository="${repo}">`);
    expect(body).toMatch(/<tr data-repository="small">.*?<td class="num">2<\/td>.*?data-size-bar/s);
  });

  it('narrows the repositories to those whose name contains the search text', async () => {
    const body = await page('/console/images?registry=test&q=MED');
    expect(body).toContain('data-repository="medium"');
    expect(body).not.toContain('data-repository="small"');
    expect(body).toContain('value="MED"');
    const none = await page('/console/images?registry=test&q=zzz');
    expect(none).toContain('No repository of test contains');
  });

  it('pages through many repositories with next and first links', async () => {
    const md = m.mirror.storage.metadata;
    for (let i = 0; i < 30; i++) md.putLink('test', `pad/r${String(i).padStart(2, '0')}`, `sha256:${'0'.repeat(62)}${String(i).padStart(2, '0')}`);
    const first = await page('/console/images?registry=test');
    expect(first.match(/<tr data-repository=/g)).toHaveLength(25);
    const next = /<a href="([^"]+)" rel="next"/.exec(first)?.[1];
    expect(next).toBeDefined();
    const second = await page(unescape(next!));
    expect(second).toContain('Page 2');
    // 33 repositories: 25 on the first page, the 8 after the last one shown on the second.
    expect(second.match(/<tr data-repository=/g)).toHaveLength(8);
    expect(second).toContain('data-repository="small"');
    expect(second).not.toContain('rel="next"');
    expect(second).toMatch(/<a href="\/console\/images\?registry=test" rel="first"/);
  });

  it('lists a repository\'s tags with their digests', async () => {
    const f = upstream.fixtures;
    const body = await page('/console/images/test/small');
    for (const tag of ['latest', 'v1']) expect(body).toContain(`<tr data-tag="${tag}">`);
    expect(body).not.toContain('data-tag="v2"');
    expect(body).toMatch(/<dd data-tag-count[^>]*>2<\/dd>/);
    expect(body).toContain(f.image('small:v1').manifest.digest.slice(0, 19));
    expect(body).toContain('href="/console/images/test/small/tags/v1"');
  });

  it('shows a tag\'s digest, layers and the pull commands that work through this mirror', async () => {
    const image = upstream.fixtures.image('small:v1');
    const body = await page('/console/images/test/small/tags/v1');
    expect(body).toMatch(new RegExp(`<dd data-digest[^>]*><code class="digest">${image.manifest.digest}</code>`));
    for (const layer of image.manifest.layers) expect(body).toContain(`<tr data-layer="${layer.digest}">`);
    expect(body).toContain('data-config');
    const command = (client: string) => unescape(new RegExp(`<code data-pull="${client}">([^<]+)</code>`).exec(body)?.[1] ?? '');
    expect(command('containerd')).toBe('ctr images pull --hosts-dir /etc/containerd/certs.d registry.test/small:v1');
    expect(command('docker')).toBe(`docker pull ${host}/registry.test/small:v1`);
    expect(command('podman')).toBe(`podman pull --tls-verify=false ${host}/registry.test/small:v1`);
    for (const client of ['containerd', 'docker', 'podman']) expect(body).toContain(`data-copy="${body.match(new RegExp(`<code data-pull="${client}">([^<]+)</code>`))![1]}"`);
    expect(body).toContain(`[host.&quot;http://${host}&quot;]`);
    // Docker's and podman's form names the registry as the path's first component; containerd sends it as ?ns=.
    const viaPrefix = await fetch(`${m.url}/v2/registry.test/small/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } });
    expect(viaPrefix.headers.get('docker-content-digest')).toBe(image.manifest.digest);
    const viaNs = await fetch(`${m.url}/v2/small/manifests/v1?ns=registry.test`, { headers: { accept: MANIFEST_ACCEPT } });
    expect(viaNs.headers.get('docker-content-digest')).toBe(image.manifest.digest);
    // An admin gets the action forms; deleting goes through the confirmation page.
    for (const action of ['prefetch', 'pin']) expect(body).toMatch(new RegExp(`<button type="submit"[^>]*data-action="${action}"`));
    expect(body).toContain('href="/console/actions/delete?image=registry.test%2Fsmall%3Av1" data-action="delete"');
    expect(body).toContain('<dd data-pinned="no">');
  });

  it('lists an index\'s platforms, and says when a tag is pinned', async () => {
    m.mirror.background.pin('registry.test/multi:latest');
    const body = await page('/console/images/test/multi/tags/latest');
    for (const child of upstream.fixtures.image('multi').manifest.children ?? []) {
      expect(body).toContain(`<tr data-platform="${child.platform!.os}/${child.platform!.architecture}">`);
    }
    expect(body).toContain('<dd data-pinned="yes">');
    expect(body).toMatch(/data-action="unpin"/);
    expect(body).not.toMatch(/data-action="pin"/);
  });

  it('answers 404 for a repository or tag the cache does not hold', async () => {
    for (const p of ['/console/images/test/nothing-here', '/console/images/test/small/tags/v9', '/console/images/nope/small']) {
      const res = await fetch(`${m.url}${p}`, { headers: auth });
      await res.text();
      expect(res.status, p).toBe(404);
    }
  });
});

describeWithTools(['docker-registry', 'htpasswd'], 'console browse pages for a viewer with repository rules', () => {
  let upstream: Upstream;
  let m: TestMirror;
  let dir: string;
  const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });
  const viewer = basic('viewer', 'viewer-password');
  const ops = basic('ops', 'ops-password');

  beforeAll(async () => {
    upstream = await startUpstream();
    dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-console-rules-'));
    const htpasswd = writeHtpasswd(dir, { viewer: 'viewer-password', ops: 'ops-password' });
    m = await startTestMirror(
      mirrorConfig(upstream.url, {
        admin: { token: ADMIN_TOKEN },
        auth: {
          htpasswd,
          rules: [
            { accounts: ['viewer'], repositories: ['registry.test/small'], roles: ['pull'] },
            { accounts: ['ops'], repositories: ['**'], roles: ['admin'] },
          ],
        },
      } as never),
    );
    // The admin account fills the cache through /v2/ (the viewer could not pull `medium`).
    for (const repo of ['small', 'medium']) {
      const res = await fetch(`${m.url}/v2/${repo}/manifests/latest`, { headers: { ...ops, accept: MANIFEST_ACCEPT } });
      await res.arrayBuffer();
      expect(res.status, repo).toBe(200);
    }
    const denied = await fetch(`${m.url}/v2/medium/manifests/latest`, { headers: { ...viewer, accept: MANIFEST_ACCEPT } });
    await denied.arrayBuffer();
    expect(denied.status).toBe(403);
  }, SLOW.timeout);
  afterAll(async () => {
    await m?.stop();
    await upstream?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function get(pathname: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
    const res = await fetch(`${m.url}${pathname}`, { headers, redirect: 'manual' });
    return { status: res.status, body: await res.text() };
  }

  it('lists and counts only the repositories the viewer may pull, and everything for an admin', async () => {
    const mine = await get('/console/images?registry=test', viewer);
    expect(mine.status).toBe(200);
    expect(mine.body).toContain('<tr data-repository="small">');
    expect(mine.body).not.toContain('medium');
    expect(mine.body).toMatch(/<tr data-registry="test">.*?<td class="num">1<\/td>/s);
    for (const who of [ops, auth]) {
      const all = await get('/console/images?registry=test', who);
      for (const repo of ['medium', 'small']) expect(all.body).toContain(`<tr data-repository="${repo}">`);
      expect(all.body).toMatch(/<tr data-registry="test">.*?<td class="num">2<\/td>/s);
    }
  });

  it('does not reveal other repositories through search', async () => {
    const found = await get('/console/images?registry=test&q=med', viewer);
    expect(found.status).toBe(200);
    expect(found.body).not.toContain('data-repository="medium"');
    expect(found.body).toContain('No repository of test contains');
    expect((await get('/console/images?registry=test&q=med', ops)).body).toContain('data-repository="medium"');
  });

  it('answers 404 to the viewer for the pages of a repository it may not pull, as for one not cached; 200 to an admin', async () => {
    for (const p of ['/console/images/test/medium', '/console/images/test/medium/tags/latest']) {
      const hidden = await get(p, viewer);
      const absent = await get(p.replace('medium', 'absent'), viewer);
      expect(hidden.status, p).toBe(404);
      expect(absent.status, p).toBe(404);
      expect(hidden.body.replace(/medium/g, 'absent')).toBe(absent.body);
      expect((await get(p, ops)).status, p).toBe(200);
    }
    const small = await get('/console/images/test/small/tags/latest', viewer);
    expect(small.status).toBe(200);
    expect(small.body).not.toMatch(/data-action="(pin|delete|prefetch)"/);
  });

  it('hides from the viewer what a job about a repository it may not pull is about, and shows it the rest', async () => {
    const queue = async (image: string) => {
      const res = await fetch(`${m.url}/admin/v1/prefetch`, { method: 'POST', headers: { ...ops, 'content-type': 'application/json' }, body: JSON.stringify({ images: [image] }) });
      expect(res.status).toBe(202);
      return ((await res.json()) as { jobs: { id: number }[] }).jobs[0]!.id;
    };
    const hiddenId = await queue('registry.test/medium:latest');
    const shownId = await queue('registry.test/small:latest');
    const list = await get('/console/jobs', viewer);
    expect(list.status).toBe(200);
    expect(list.body).not.toContain('medium');
    expect(list.body).toContain('a repository you cannot pull');
    expect(list.body).toContain('small');
    expect((await get(`/console/jobs/${hiddenId}`, viewer)).status).toBe(404);
    expect((await get(`/console/jobs/${hiddenId}/events`, viewer)).status).toBe(404);
    expect((await get(`/console/jobs/${shownId}`, viewer)).status).toBe(200);
    const forAdmin = await get(`/console/jobs/${hiddenId}`, ops);
    expect(forAdmin.status).toBe(200);
    expect(forAdmin.body).toContain('medium');
  });
});
