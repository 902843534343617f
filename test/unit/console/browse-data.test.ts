/**
 * @module test/unit/console/browse-data
 * The console's reads on a real metadata database: repositories of an upstream or a hosted
 * registry a page at a time after a key, narrowed by a search text, with tag counts and linked
 * bytes; tags a page at a time; a tag's detail (an image's layers, an index's platforms, pins);
 * the pull commands as the router routes them; and the console's image URLs both ways.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Metadata } from '../../../src/cache/metadata/metadata.ts';
import { Pins } from '../../../src/cache/metadata/pins.ts';
import type { Config } from '../../../src/config/schema.ts';
import { findSource, sourceSummaries, type Source } from '../../../src/console/data/sources.ts';
import { repositoryPage } from '../../../src/console/data/repositories.ts';
import { tagPage } from '../../../src/console/data/tags.ts';
import { tagDetail } from '../../../src/console/data/tag-detail.ts';
import { pullCommands } from '../../../src/console/data/pull-commands.ts';
import { imagesUrl, parseImagePath, repositoryUrl, tagUrl } from '../../../src/console/data/links.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const sha = (s: string | Buffer) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

const config = {
  upstreams: [
    { name: 'hub', registries: ['docker.io'], offline: false },
    { name: 'test', registries: ['registry.test'], offline: false },
  ],
  hosted: [{ name: 'registry.internal', maxSize: 0 }],
} as unknown as Config;

let dir: string;
let md: Metadata;
let hub: Source;

/** A blob of `size` bytes linked to a repository of `hub`. */
function blob(repo: string, name: string, size: number): { digest: string; size: number; mediaType: string } {
  const digest = sha(name);
  md.putBlob({ digest, size, mediaType: LAYER }, { upstream: 'hub', repo });
  return { digest, size, mediaType: LAYER };
}

function image(repo: string, tag: string, layers: Array<{ digest: string; size: number; mediaType: string }>, config: { digest: string; size: number; mediaType: string }): string {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers }));
  const digest = sha(bytes);
  md.putManifest({ digest, mediaType: OCI_MANIFEST, bytes }, { upstream: 'hub', repo }, tag);
  return digest;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-browse-'));
  md = new Metadata(path.join(dir, 'db.sqlite'), { flushIntervalMs: 3_600_000, now: () => 1_700_000_000_000 });
  hub = findSource(config, 'hub')!;
  // Repositories of hub: library/alpine (3 tags), library/busybox (1), org/app-server (blobs only), org/tools (1 tag).
  const cfg = blob('library/alpine', 'alpine-config', 100);
  const l1 = blob('library/alpine', 'alpine-layer-1', 1000);
  const l2 = blob('library/alpine', 'alpine-layer-2', 2000);
  for (const tag of ['3.18', '3.19', 'latest']) image('library/alpine', tag, [l1, l2], cfg);
  image('library/busybox', '1.36', [blob('library/busybox', 'bb-layer', 500)], blob('library/busybox', 'bb-config', 50));
  blob('org/app-server', 'app-layer', 7000);
  image('org/tools', 'v1', [], blob('org/tools', 'tools-config', 10));
  md.hosted.putLink('registry.internal', 'team/one', sha('pushed'), 'blob', 1);
});

afterEach(async () => {
  md.close();
  await rm(dir, { recursive: true, force: true });
});

describe('repositories', () => {
  it('lists repositories from links and tags in name order, a page at a time after the last one shown', () => {
    const first = repositoryPage(md, hub, { limit: 2 });
    expect(first.items.map((r) => r.repo)).toEqual(['library/alpine', 'library/busybox']);
    expect(first.next).toBe('library/busybox');
    const second = repositoryPage(md, hub, { after: first.next!, limit: 2 });
    expect(second.items.map((r) => r.repo)).toEqual(['org/app-server', 'org/tools']);
    expect(second.next).toBeUndefined();
  });

  it('counts each repository\'s tags and the blobs linked to it', () => {
    const alpine = repositoryPage(md, hub, { limit: 1 }).items[0];
    expect(alpine).toEqual({ repo: 'library/alpine', tags: 3, blobs: 3, bytes: 3100 });
    expect(repositoryPage(md, hub, { q: 'app' }).items).toEqual([{ repo: 'org/app-server', tags: 0, blobs: 1, bytes: 7000 }]);
    // A whole page is counted at once: each row its own, none borrowed from a neighbour.
    expect(repositoryPage(md, hub, {}).items).toEqual([
      { repo: 'library/alpine', tags: 3, blobs: 3, bytes: 3100 },
      { repo: 'library/busybox', tags: 1, blobs: 2, bytes: 550 },
      { repo: 'org/app-server', tags: 0, blobs: 1, bytes: 7000 },
      { repo: 'org/tools', tags: 1, blobs: 1, bytes: 10 },
    ]);
    // A hosted link to a blob not committed yet counts no blob.
    expect(repositoryPage(md, findSource(config, 'registry.internal')!, {}).items).toEqual([{ repo: 'team/one', tags: 0, blobs: 0, bytes: 0 }]);
  });

  it('narrows the list to names containing the search text, case-insensitively, and pages the matches', () => {
    expect(repositoryPage(md, hub, { q: 'LIBRARY/' }).items.map((r) => r.repo)).toEqual(['library/alpine', 'library/busybox']);
    const page = repositoryPage(md, hub, { q: 'o', limit: 2 });
    expect(page.items.map((r) => r.repo)).toEqual(['library/busybox', 'org/app-server']);
    expect(repositoryPage(md, hub, { q: 'o', after: page.next!, limit: 2 }).items.map((r) => r.repo)).toEqual(['org/tools']);
    expect(repositoryPage(md, hub, { q: 'nothing-like-it' }).items).toEqual([]);
  });

  it('pages only the repositories a viewer may pull, full pages across filtered rows, and counts only those', () => {
    const visible = (repo: string) => repo !== 'library/busybox' && repo !== 'org/app-server';
    const first = repositoryPage(md, hub, { limit: 1, visible });
    expect(first.items.map((r) => r.repo)).toEqual(['library/alpine']);
    const second = repositoryPage(md, hub, { after: first.next!, limit: 1, visible });
    expect(second).toMatchObject({ items: [{ repo: 'org/tools' }], next: undefined });
    expect(repositoryPage(md, hub, { q: 'library/', visible }).items.map((r) => r.repo)).toEqual(['library/alpine']);
    const counts = sourceSummaries(config, md, (s) => (s.name === 'hub' ? visible : undefined));
    expect(counts.map((s) => [s.name, s.repositories, s.capped])).toEqual([
      ['hub', 2, false],
      ['test', 0, false],
      ['registry.internal', 1, false],
    ]);
  });

  it('counts the repositories of every upstream and hosted registry', () => {
    expect(sourceSummaries(config, md).map((s) => [s.name, s.kind, s.repositories])).toEqual([
      ['hub', 'upstream', 4],
      ['test', 'upstream', 0],
      ['registry.internal', 'hosted', 1],
    ]);
  });
});

describe('tags', () => {
  it('pages a repository\'s tags after the last one shown, each with its manifest\'s size and confirmation time', () => {
    const first = tagPage(md, hub, 'library/alpine', { limit: 2 });
    expect(first.items.map((t) => t.tag)).toEqual(['3.18', '3.19']);
    expect(first.items[0]).toMatchObject({ at: 1_700_000_000_000, lastAccess: 1_700_000_000_000, mediaType: OCI_MANIFEST });
    expect(first.items[0]!.manifestSize).toBeGreaterThan(100);
    expect(tagPage(md, hub, 'library/alpine', { after: first.next!, limit: 2 })).toEqual({ items: [expect.objectContaining({ tag: 'latest' })], next: undefined });
  });
});

describe('tag detail', () => {
  it('lists an image\'s config and layers with sizes, and which of them are cached', () => {
    md.deleteBlob(sha('alpine-layer-2'));
    const d = tagDetail(md, new Pins({ metadata: md }), hub, 'library/alpine', '3.19')!;
    expect(d.image).toBe('docker.io/library/alpine:3.19');
    expect(d.manifest?.kind).toBe('image');
    expect(d.manifest?.config).toEqual({ digest: sha('alpine-config'), mediaType: LAYER, size: 100, cached: true });
    expect(d.manifest?.layers.map((l) => [l.size, l.cached])).toEqual([
      [1000, true],
      [2000, false],
    ]);
    expect(d.pin).toBeUndefined();
    expect(tagDetail(md, new Pins({ metadata: md }), hub, 'library/alpine', 'nope')).toBeUndefined();
  });

  it('lists an index\'s platforms, marking attestations, and says which pin holds the tag', () => {
    const child = sha('child');
    const bytes = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: child, size: 400, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
        { mediaType: OCI_MANIFEST, digest: sha('att'), size: 300, platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } },
      ],
    }));
    md.putManifest({ digest: sha(bytes), mediaType: OCI_INDEX, bytes }, { upstream: 'hub', repo: 'library/alpine' }, 'multi');
    const pins = new Pins({ metadata: md, config: ['alpine:multi'] });
    const d = tagDetail(md, pins, hub, 'library/alpine', 'multi')!;
    expect(d.manifest?.kind).toBe('index');
    expect(d.manifest?.platforms.map((p) => [p.platform, p.attestation, p.cached])).toEqual([
      ['linux/arm/v7', false, false],
      ['unknown/unknown', true, false],
    ]);
    expect(d.pin).toEqual({ ref: 'docker.io/library/alpine:multi', source: 'config' });
  });
});

describe('pull commands', () => {
  it('names the registry as containerd\'s host directory and as the first path component for Docker and podman', () => {
    const p = pullCommands({ mirrorHost: 'mirror.local:5000', tls: false, registry: 'registry.test', repo: 'team/app', tag: 'v1' });
    expect(p.containerd).toBe('ctr images pull --hosts-dir /etc/containerd/certs.d registry.test/team/app:v1');
    expect(p.hostsDir).toBe('registry.test');
    expect(p.hostsToml).toContain('[host."http://mirror.local:5000"]');
    expect(p.docker).toBe('docker pull mirror.local:5000/registry.test/team/app:v1');
    expect(p.dockerMirror).toBeUndefined();
    expect(p.podman).toBe('podman pull --tls-verify=false mirror.local:5000/registry.test/team/app:v1');
    expect(p.mirrorLocation).toBe('mirror.local:5000/registry.test');
  });

  it('offers Docker\'s registry-mirrors form for Docker Hub images only, with the short name', () => {
    const p = pullCommands({ mirrorHost: 'mirror.example', tls: true, registry: 'docker.io', repo: 'library/alpine', tag: '3.19' });
    expect(p.dockerMirror).toBe('docker pull alpine:3.19');
    expect(p.docker).toBe('docker pull mirror.example/docker.io/library/alpine:3.19');
    expect(p.podman).toBe('podman pull mirror.example/docker.io/library/alpine:3.19');
    expect(p.hostsToml).toContain('server = "https://registry-1.docker.io"');
    expect(p.insecure).toBe(false);
  });
});

describe('console image URLs', () => {
  it('round-trips sources, nested repositories and tags', () => {
    expect(repositoryUrl('hub', 'library/alpine')).toBe('/console/images/hub/library/alpine');
    expect(tagUrl('hub', 'library/alpine', '3.19')).toBe('/console/images/hub/library/alpine/tags/3.19');
    expect(parseImagePath('hub/library/alpine/tags/3.19')).toEqual({ source: 'hub', repo: 'library/alpine', tag: '3.19' });
    expect(parseImagePath('hub/library/alpine')).toEqual({ source: 'hub', repo: 'library/alpine', tag: undefined });
    expect(parseImagePath('hub')).toBeUndefined();
    expect(parseImagePath('hub/%E0%A4%A')).toBeUndefined();
    expect(imagesUrl({ registry: 'hub', q: 'a b', after: '', page: 2 })).toBe('/console/images?registry=hub&q=a+b&page=2');
  });
});
