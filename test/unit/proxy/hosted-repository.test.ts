/**
 * @module test/unit/proxy/hosted-repository
 * HostedContent against a real data directory (openStorage, real SQLite): blobs are committed the
 * way an upload commits them (temp file → rename → row) and linked, then manifests are pushed.
 * Covers the push checks of distribution-spec v1.1 (references in the repository, subject may
 * dangle, digest references, media types, the 4 MiB limit), tags (move, delete, pagination),
 * referrers with and without an artifactType filter, mounts, the quota, that eviction, gc and
 * cache image deletion leave hosted content alone, and a schema-3 database gaining the tables.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { Evictor } from '../../../src/cache/lifecycle/eviction.ts';
import { GarbageCollector } from '../../../src/cache/lifecycle/gc.ts';
import { ImageDeleter } from '../../../src/cache/lifecycle/image-delete.ts';
import { Metadata } from '../../../src/cache/metadata/metadata.ts';
import { SCHEMA_VERSION } from '../../../src/cache/metadata/schema.ts';
import { openStorage, type Storage } from '../../../src/cache/storage.ts';
import { HostedContent } from '../../../src/proxy/hosted/hosted-repository.ts';
import { MANIFEST_MAX_BYTES } from '../../../src/proxy/hosted/pushed-manifest.ts';
import { toErrorEnvelope } from '../../../src/registry/errors.ts';
import { silentLogger } from '../../../src/util/logger.ts';
import { thrown } from '../../helpers/thrown.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const CONFIG = 'application/vnd.oci.image.config.v1+json';
const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const EMPTY = 'application/vnd.oci.empty.v1+json';
const SBOM = 'application/vnd.example.sbom.v1';
const SIG = 'application/vnd.example.signature.v1';
const REG = 'registry.internal';
const REPO = 'team/app';
const T0 = 1_700_000_000_000;

const sha256 = (bytes: Buffer | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

interface Fixture {
  root: string;
  storage: Storage;
  hosted: HostedContent;
  advance(ms: number): void;
  /** Commits a blob as an upload does (no repository link); returns its digest and size. */
  commit(content: string): Promise<{ digest: string; size: number }>;
  /** Commits and links a blob into a repository. */
  push(content: string, repo?: string): Promise<{ digest: string; size: number }>;
  close(): Promise<void>;
}

let fx: Fixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

async function open(opts: { maxSize?: number } = {}): Promise<Fixture> {
  const root = await mkdtemp(path.join(tmpdir(), 'ocimirror-hosted-'));
  let now = T0;
  const storage = await openStorage({ path: root, hotCacheBytes: 1 << 20, log: silentLogger, now: () => now });
  const hosted = new HostedContent({ metadata: storage.metadata, blobs: storage.blobs, log: silentLogger, now: () => now, maxSize: () => opts.maxSize ?? 0 });
  const commit = async (content: string) => {
    const bytes = Buffer.from(content);
    const digest = sha256(bytes);
    const hex = digest.slice('sha256:'.length);
    const temp = storage.blobs.store.tempPath(hex);
    await writeFile(temp, bytes);
    await storage.blobs.store.commit(temp, hex);
    storage.metadata.putBlob({ digest, size: bytes.length, mediaType: null });
    return { digest, size: bytes.length };
  };
  fx = {
    root,
    storage,
    hosted,
    advance: (ms) => void (now += ms),
    commit,
    async push(content, repo = REPO) {
      const blob = await commit(content);
      hosted.linkBlob(REG, repo, blob.digest);
      return blob;
    },
    async close() {
      storage.close();
      await rm(root, { recursive: true, force: true });
    },
  };
  return fx;
}

type Desc = { digest: string; size: number };

function imageManifest(config: Desc, layers: Desc[], extra: Record<string, unknown> = {}, configType = CONFIG): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: configType, ...config },
      layers: layers.map((l) => ({ mediaType: LAYER, ...l })),
      ...extra,
    }),
  );
}

function indexManifest(children: Desc[], extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: children.map((c) => ({ mediaType: OCI_MANIFEST, ...c })), ...extra }));
}

/** A pushed image: config and one layer linked, the manifest under `tag`. */
async function pushImage(f: Fixture, tag: string, name = tag, repo = REPO): Promise<{ digest: string; bytes: Buffer; layer: string; config: string }> {
  const config = await f.push(`config ${name}`, repo);
  const layer = await f.push(`layer ${name}`, repo);
  const bytes = imageManifest(config, [layer]);
  const { digest } = f.hosted.putManifest(REG, repo, tag, OCI_MANIFEST, bytes);
  return { digest, bytes, layer: layer.digest, config: config.digest };
}

/** A referrer of `subject` with an empty config, as oras pushes artifacts. */
async function pushReferrer(f: Fixture, subject: Desc, artifactType: string | undefined, note: string, configType = EMPTY): Promise<{ digest: string; bytes: Buffer }> {
  const config = await f.push('{}');
  const blob = await f.push(`payload ${note}`);
  const bytes = imageManifest(config, [blob], {
    ...(artifactType ? { artifactType } : {}),
    subject: { mediaType: OCI_MANIFEST, ...subject },
    annotations: { 'org.example.note': note },
  }, configType);
  const { digest } = f.hosted.putManifest(REG, REPO, sha256(bytes), OCI_MANIFEST, bytes);
  return { digest, bytes };
}

describe('HostedContent: pushing manifests', () => {
  it('stores a manifest under a tag and serves back the exact bytes by tag and by digest', async () => {
    const f = await open();
    const { digest, bytes } = await pushImage(f, 'v1');
    expect(digest).toBe(sha256(bytes));
    expect(f.hosted.getManifest(REG, REPO, 'v1')).toEqual({ digest, mediaType: OCI_MANIFEST, bytes });
    expect(f.hosted.getManifest(REG, REPO, digest).bytes.equals(bytes)).toBe(true);
    expect(f.hosted.headManifest(REG, REPO, 'v1')).toEqual({ digest, mediaType: OCI_MANIFEST, size: bytes.length });
  });

  it('keeps pushed content to its repository: another repository of the registry does not see it', async () => {
    const f = await open();
    const { digest, layer } = await pushImage(f, 'v1');
    expect(thrown(() => f.hosted.getManifest(REG, 'team/other', digest)).code).toBe('MANIFEST_UNKNOWN');
    expect(thrown(() => f.hosted.getManifest('other.internal', REPO, 'v1')).code).toBe('MANIFEST_UNKNOWN');
    expect(f.hosted.hasBlob(REG, 'team/other', layer)).toBeUndefined();
    expect(f.hosted.hasBlob(REG, REPO, layer)).toMatchObject({ digest: layer });
  });

  it('refuses a manifest whose layer is stored but not linked in the repository, naming the digest', async () => {
    const f = await open();
    const config = await f.push('config');
    const elsewhere = await f.push('layer', 'team/other');
    const err = thrown(() => f.hosted.putManifest(REG, REPO, 'v1', OCI_MANIFEST, imageManifest(config, [elsewhere])));
    expect(err.code).toBe('MANIFEST_BLOB_UNKNOWN');
    expect(err.status).toBe(404);
    expect(err.detail).toEqual({ digest: elsewhere.digest });
  });

  it('refuses a manifest whose config was never uploaded', async () => {
    const f = await open();
    const layer = await f.push('layer');
    const missing = { digest: sha256('never uploaded'), size: 14 };
    expect(thrown(() => f.hosted.putManifest(REG, REPO, 'v1', OCI_MANIFEST, imageManifest(missing, [layer]))).detail).toEqual({ digest: missing.digest });
  });

  it('refuses a descriptor whose size differs from the stored blob', async () => {
    const f = await open();
    const config = await f.push('config');
    const layer = await f.push('layer');
    const err = thrown(() => f.hosted.putManifest(REG, REPO, 'v1', OCI_MANIFEST, imageManifest(config, [{ ...layer, size: layer.size + 1 }])));
    expect(err.code).toBe('MANIFEST_INVALID');
  });

  it('accepts an index once its platform manifests are in the repository, and refuses it before', async () => {
    const f = await open();
    const a = await pushImage(f, 'amd64');
    const b = await f.push('config b');
    const bLayer = await f.push('layer b');
    const bBytes = imageManifest(b, [bLayer]);
    const children = [{ digest: a.digest, size: a.bytes.length }, { digest: sha256(bBytes), size: bBytes.length }];
    const index = indexManifest(children);
    const err = thrown(() => f.hosted.putManifest(REG, REPO, 'multi', OCI_INDEX, index));
    expect(err.code).toBe('MANIFEST_BLOB_UNKNOWN');
    expect(err.detail).toEqual({ digest: sha256(bBytes) });
    f.hosted.putManifest(REG, REPO, sha256(bBytes), OCI_MANIFEST, bBytes);
    expect(f.hosted.putManifest(REG, REPO, 'multi', OCI_INDEX, index).digest).toBe(sha256(index));
    expect(f.hosted.getManifest(REG, REPO, 'multi').mediaType).toBe(OCI_INDEX);
  });

  it('accepts a Docker schema 2 manifest and takes parameters off the Content-Type', async () => {
    const f = await open();
    const config = await f.push('config');
    const layer = await f.push('layer');
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: { mediaType: 'application/vnd.docker.container.image.v1+json', ...config }, layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', ...layer }] }));
    f.hosted.putManifest(REG, REPO, 'docker', `${DOCKER_MANIFEST}; charset=utf-8`, bytes);
    expect(f.hosted.getManifest(REG, REPO, 'docker').mediaType).toBe(DOCKER_MANIFEST);
  });

  it('refuses bytes that are not a manifest it stores, each as MANIFEST_INVALID', async () => {
    const f = await open();
    const config = await f.push('config');
    const layer = await f.push('layer');
    const good = JSON.parse(imageManifest(config, [layer]).toString()) as Record<string, unknown>;
    const cases: [string, string | undefined, Buffer][] = [
      ['not JSON', OCI_MANIFEST, Buffer.from('{"schemaVersion": 2,')],
      ['a JSON array', OCI_MANIFEST, Buffer.from('[]')],
      ['schemaVersion 1', OCI_MANIFEST, Buffer.from(JSON.stringify({ ...good, schemaVersion: 1 }))],
      ['mediaType differing from Content-Type', OCI_INDEX, Buffer.from(JSON.stringify(good))],
      ['an unknown media type', 'application/vnd.example.thing+json', Buffer.from(JSON.stringify({ ...good, mediaType: undefined }))],
      ['no media type at all', undefined, Buffer.from(JSON.stringify({ ...good, mediaType: undefined }))],
      ['an image manifest without layers', OCI_MANIFEST, Buffer.from(JSON.stringify({ ...good, layers: undefined }))],
      ['a descriptor with a sha512 digest', OCI_MANIFEST, Buffer.from(JSON.stringify({ ...good, layers: [{ mediaType: LAYER, size: 1, digest: `sha512:${'a'.repeat(128)}` }] }))],
      ['a descriptor without a size', OCI_MANIFEST, Buffer.from(JSON.stringify({ ...good, layers: [{ mediaType: LAYER, digest: layer.digest }] }))],
    ];
    for (const [what, type, bytes] of cases) expect(thrown(() => f.hosted.putManifest(REG, REPO, 'bad', type, bytes)).code, what).toBe('MANIFEST_INVALID');
    expect(thrown(() => f.hosted.getManifest(REG, REPO, 'bad')).code).toBe('MANIFEST_UNKNOWN');
  });

  it('refuses a manifest over 4 MiB with a 413 that clients read as MANIFEST_INVALID', async () => {
    const f = await open();
    const config = await f.push('config');
    const padded = imageManifest(config, [], { annotations: { pad: 'x'.repeat(MANIFEST_MAX_BYTES) } });
    const err = thrown(() => f.hosted.putManifest(REG, REPO, 'big', OCI_MANIFEST, padded));
    expect(err.status).toBe(413);
    expect(toErrorEnvelope(err).body.errors[0]?.code).toBe('MANIFEST_INVALID');
  });

  it('stores a manifest pushed by its digest without tagging it, and refuses a digest that does not match', async () => {
    const f = await open();
    const config = await f.push('config');
    const bytes = imageManifest(config, []);
    const wrong = sha256('something else');
    const err = thrown(() => f.hosted.putManifest(REG, REPO, wrong, OCI_MANIFEST, bytes));
    expect(err.code).toBe('DIGEST_INVALID');
    expect(f.hosted.putManifest(REG, REPO, sha256(bytes), OCI_MANIFEST, bytes).digest).toBe(sha256(bytes));
    expect(f.hosted.tags(REG, REPO).tags).toEqual([]);
    expect(thrown(() => f.hosted.putManifest(REG, REPO, 'no/slash', OCI_MANIFEST, bytes)).code).toBe('TAG_INVALID');
  });

  it('moves a tag to the manifest pushed under it last', async () => {
    const f = await open();
    const first = await pushImage(f, 'latest', 'one');
    f.advance(1000);
    const second = await pushImage(f, 'latest', 'two');
    expect(f.hosted.getManifest(REG, REPO, 'latest').digest).toBe(second.digest);
    expect(f.hosted.getManifest(REG, REPO, first.digest).digest).toBe(first.digest);
    expect(f.hosted.tags(REG, REPO).tags).toEqual(['latest']);
  });
});

describe('HostedContent: subjects and referrers', () => {
  it('accepts a referrer before its subject exists, returns the subject and lists it', async () => {
    const f = await open();
    const subject = { digest: sha256('not pushed yet'), size: 14 };
    const config = await f.push('{}');
    const bytes = imageManifest(config, [], { artifactType: SBOM, subject: { mediaType: OCI_MANIFEST, ...subject } }, EMPTY);
    const pushed = f.hosted.putManifest(REG, REPO, sha256(bytes), OCI_MANIFEST, bytes);
    expect(pushed.subject).toBe(subject.digest);
    const answer = f.hosted.referrers(REG, REPO, subject.digest);
    expect(answer.index.manifests).toEqual([{ mediaType: OCI_MANIFEST, digest: pushed.digest, size: bytes.length, artifactType: SBOM }]);
    expect(answer.filtersApplied).toEqual([]);
  });

  it('describes each referrer with its artifactType (else its config media type) and annotations, and filters by artifactType', async () => {
    const f = await open();
    const image = await pushImage(f, 'v1');
    const subject = { digest: image.digest, size: image.bytes.length };
    const sbom = await pushReferrer(f, subject, SBOM, 'sbom');
    f.advance(1000);
    const sig = await pushReferrer(f, subject, undefined, 'sig', SIG);
    const all = f.hosted.referrers(REG, REPO, image.digest);
    expect(all.index).toEqual({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: sbom.digest, size: sbom.bytes.length, artifactType: SBOM, annotations: { 'org.example.note': 'sbom' } },
        { mediaType: OCI_MANIFEST, digest: sig.digest, size: sig.bytes.length, artifactType: SIG, annotations: { 'org.example.note': 'sig' } },
      ],
    });
    expect(JSON.parse(all.body.toString())).toEqual(all.index);
    const filtered = f.hosted.referrers(REG, REPO, image.digest, SIG);
    expect(filtered.index.manifests.map((m) => m.digest)).toEqual([sig.digest]);
    expect(filtered.filtersApplied).toEqual(['artifactType']);
    expect(f.hosted.referrers(REG, 'team/other', image.digest).index.manifests).toEqual([]);
    expect(thrown(() => f.hosted.referrers(REG, REPO, 'sha256:nothex')).code).toBe('DIGEST_INVALID');
  });

  it('takes a referrers-tag-schema tag (sha256-<hex>) as an ordinary tag', async () => {
    const f = await open();
    const image = await pushImage(f, 'v1');
    const tag = image.digest.replace(':', '-');
    const index = indexManifest([], { subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.bytes.length } });
    f.hosted.putManifest(REG, REPO, tag, OCI_INDEX, index);
    expect(f.hosted.getManifest(REG, REPO, tag).bytes.equals(index)).toBe(true);
    expect(f.hosted.tags(REG, REPO).tags).toEqual([tag, 'v1']);
  });

  it('drops a referrer from the list once it is deleted', async () => {
    const f = await open();
    const image = await pushImage(f, 'v1');
    const sbom = await pushReferrer(f, { digest: image.digest, size: image.bytes.length }, SBOM, 'sbom');
    f.hosted.deleteManifest(REG, REPO, sbom.digest);
    expect(f.hosted.referrers(REG, REPO, image.digest).index.manifests).toEqual([]);
  });
});

describe('HostedContent: deleting', () => {
  it('deletes a tag only, leaving the manifest pullable by digest', async () => {
    const f = await open();
    const image = await pushImage(f, 'v1');
    f.hosted.putManifest(REG, REPO, 'stable', OCI_MANIFEST, image.bytes);
    expect(f.hosted.deleteManifest(REG, REPO, 'v1')).toEqual({ digest: image.digest, tags: ['v1'] });
    expect(thrown(() => f.hosted.getManifest(REG, REPO, 'v1')).code).toBe('MANIFEST_UNKNOWN');
    expect(f.hosted.getManifest(REG, REPO, image.digest).digest).toBe(image.digest);
    expect(f.hosted.tags(REG, REPO).tags).toEqual(['stable']);
    expect(thrown(() => f.hosted.deleteManifest(REG, REPO, 'v1')).code).toBe('MANIFEST_UNKNOWN');
  });

  it('deletes a manifest by digest together with every tag of the repository pointing at it', async () => {
    const f = await open();
    const image = await pushImage(f, 'v1');
    f.hosted.putManifest(REG, REPO, 'stable', OCI_MANIFEST, image.bytes);
    const other = await pushImage(f, 'keep', 'other');
    const deletion = f.hosted.deleteManifest(REG, REPO, image.digest);
    expect(deletion.tags.sort()).toEqual(['stable', 'v1']);
    expect(thrown(() => f.hosted.getManifest(REG, REPO, image.digest)).code).toBe('MANIFEST_UNKNOWN');
    expect(f.hosted.tags(REG, REPO).tags).toEqual(['keep']);
    expect(f.hosted.getManifest(REG, REPO, 'keep').digest).toBe(other.digest);
    expect(thrown(() => f.hosted.deleteManifest(REG, REPO, image.digest)).code).toBe('MANIFEST_UNKNOWN');
  });

  it('unlinks a blob from the repository and says BLOB_UNKNOWN the second time', async () => {
    const f = await open();
    const blob = await f.push('layer');
    f.hosted.deleteBlob(REG, REPO, blob.digest);
    expect(f.hosted.hasBlob(REG, REPO, blob.digest)).toBeUndefined();
    expect(f.storage.metadata.getBlob(blob.digest)).toBeDefined();
    expect(thrown(() => f.hosted.deleteBlob(REG, REPO, blob.digest)).code).toBe('BLOB_UNKNOWN');
  });
});

describe('HostedContent: blobs and mounts', () => {
  it('links only blobs that are stored', async () => {
    const f = await open();
    expect(thrown(() => f.hosted.linkBlob(REG, REPO, sha256('never'))).code).toBe('BLOB_UNKNOWN');
  });

  it('mounts a blob from a repository the caller may read, and not otherwise', async () => {
    const f = await open();
    const blob = await f.push('shared layer', 'team/base');
    expect(f.hosted.mount(REG, REPO, blob.digest, 'team/base', () => false)).toBe(false);
    expect(f.hosted.mount(REG, REPO, blob.digest, 'team/nothing', () => true)).toBe(false);
    expect(f.hosted.mount(REG, REPO, 'sha256:bad', 'team/base', () => true)).toBe(false);
    expect(f.hosted.hasBlob(REG, REPO, blob.digest)).toBeUndefined();
    const asked: string[] = [];
    expect(f.hosted.mount(REG, REPO, blob.digest, 'team/base', (r) => (asked.push(r), true))).toBe(true);
    expect(asked).toEqual(['team/base']);
    expect(f.hosted.hasBlob(REG, REPO, blob.digest)).toMatchObject({ digest: blob.digest, size: blob.size });
  });
});

describe('HostedContent: tag lists', () => {
  it('pages tags in lexical order after last, telling whether more remain', async () => {
    const f = await open();
    const image = await pushImage(f, 'a');
    for (const tag of ['d', 'b', 'e', 'c']) f.hosted.putManifest(REG, REPO, tag, OCI_MANIFEST, image.bytes);
    expect(f.hosted.tags(REG, REPO)).toEqual({ name: REPO, tags: ['a', 'b', 'c', 'd', 'e'], more: false });
    expect(f.hosted.tags(REG, REPO, { n: '2' })).toEqual({ name: REPO, tags: ['a', 'b'], more: true });
    expect(f.hosted.tags(REG, REPO, { n: 2, last: 'b' })).toEqual({ name: REPO, tags: ['c', 'd'], more: true });
    expect(f.hosted.tags(REG, REPO, { n: '2', last: 'c' })).toEqual({ name: REPO, tags: ['d', 'e'], more: false });
    expect(f.hosted.tags(REG, REPO, { last: 'd' }).tags).toEqual(['e']);
    expect(f.hosted.tags(REG, REPO, { n: '0' })).toEqual({ name: REPO, tags: [], more: false });
  });

  it('refuses a bad n and answers NAME_UNKNOWN for a repository holding nothing', async () => {
    const f = await open();
    await pushImage(f, 'v1');
    expect(thrown(() => f.hosted.tags(REG, REPO, { n: '-1' })).code).toBe('PAGINATION_NUMBER_INVALID');
    expect(thrown(() => f.hosted.tags(REG, REPO, { n: 'ten' })).code).toBe('PAGINATION_NUMBER_INVALID');
    expect(thrown(() => f.hosted.tags(REG, 'team/none')).code).toBe('NAME_UNKNOWN');
  });

  it('lists the repositories of a registry and counts what each registry holds', async () => {
    const f = await open();
    const image = await pushImage(f, 'v1');
    await f.push('just a blob', 'team/blobs');
    expect(f.hosted.repositories(REG)).toEqual(['team/app', 'team/blobs']);
    expect(f.hosted.repositories('other.internal')).toEqual([]);
    const size = image.bytes.length + 'config v1'.length + 'layer v1'.length + 'just a blob'.length;
    expect(f.hosted.stats()).toEqual([{ registry: REG, repositories: 2, tags: 1, manifests: 1, blobs: 3, bytes: size }]);
  });
});

describe('HostedContent: quota', () => {
  it('counts each digest linked in the registry once, however many repositories link it', async () => {
    const f = await open();
    const blob = await f.push('0123456789');
    f.hosted.mount(REG, 'team/other', blob.digest, REPO, () => true);
    expect(f.hosted.usedBytes(REG)).toBe(10);
    expect(f.hosted.usedBytes('other.internal')).toBe(0);
  });

  it('refuses more bytes than the quota leaves with a 507 that clients read as DENIED', async () => {
    const f = await open();
    await f.push('0123456789');
    expect(() => f.hosted.assertRoom(REG, 20, 10)).not.toThrow();
    expect(() => f.hosted.assertRoom(REG, 0, 1_000_000)).not.toThrow();
    const err = thrown(() => f.hosted.assertRoom(REG, 20, 11));
    expect(err.status).toBe(507);
    expect(err.message).toMatch(/quota/);
    expect(toErrorEnvelope(err).body.errors[0]?.code).toBe('DENIED');
  });

  it('refuses a manifest that would take the registry over its quota', async () => {
    const f = await open({ maxSize: 40 });
    const config = await f.push('config');
    const err = thrown(() => f.hosted.putManifest(REG, REPO, 'v1', OCI_MANIFEST, imageManifest(config, [])));
    expect(err.code).toBe('QUOTA_EXCEEDED');
    expect(thrown(() => f.hosted.getManifest(REG, REPO, 'v1')).code).toBe('MANIFEST_UNKNOWN');
  });
});

describe('HostedContent: the cache lifecycle leaves hosted content alone', () => {
  it('neither quota nor maxAge eviction removes pushed blobs, and hosted bytes do not count against the cache quota', async () => {
    const f = await open();
    const image = await pushImage(f, 'v1');
    const waiting = await f.push('uploaded, no manifest yet');
    const cached = await f.commit('pulled through the cache');
    f.advance(10 * 86_400_000);
    const { metadata, blobs, hot } = f.storage;
    const evictor = new Evictor({ metadata, blobs, hot, log: silentLogger, now: () => T0 + 10 * 86_400_000, maxSize: 1, maxAge: 60_000 });
    const report = await evictor.run();
    expect(report.evicted).toBe(1);
    for (const d of [image.config, image.layer, waiting.digest]) expect(metadata.getBlob(d), d).toBeDefined();
    expect(metadata.getBlob(cached.digest)).toBeUndefined();
    expect(report.usage).toBe(0);
    expect(evictor.needed()).toBe(false);
    expect(f.hosted.getManifest(REG, REPO, 'v1').digest).toBe(image.digest);
  });

  it('keeps the layers of a hosted manifest even after the blob itself was deleted from the repository', async () => {
    const f = await open();
    const image = await pushImage(f, 'v1');
    f.hosted.deleteBlob(REG, REPO, image.layer);
    const { metadata, blobs, hot } = f.storage;
    await new Evictor({ metadata, blobs, hot, log: silentLogger, maxSize: 1, maxAge: 60_000, now: () => T0 + 86_400_000 }).run();
    expect(metadata.getBlob(image.layer)).toBeDefined();
  });

  it('gc does not collect a pushed blob waiting for its manifest, and cache image deletion leaves a pushed manifest', async () => {
    const f = await open();
    const waiting = await f.push('uploaded, no manifest yet');
    const image = await pushImage(f, 'v1');
    const { metadata, blobs, hot } = f.storage;
    const report = await new GarbageCollector({ metadata, blobs, hot, log: silentLogger }).collectGarbage({ grace: 0, now: T0 + 86_400_000 });
    expect(report.unreferencedBlobs).toBe(0);
    expect(metadata.getBlob(waiting.digest)).toBeDefined();
    const deleted = await new ImageDeleter({ metadata, blobs, hot, log: silentLogger }).deleteImage({ upstream: 'hub', repo: REPO, reference: image.digest });
    expect(deleted).toMatchObject({ manifestsRemoved: 0, blobsRemoved: 0 });
    expect(f.hosted.getManifest(REG, REPO, image.digest).digest).toBe(image.digest);
  });

  it('lets gc take an unlinked blob once nothing links it', async () => {
    const f = await open();
    const blob = await f.push('pushed then deleted');
    f.hosted.deleteBlob(REG, REPO, blob.digest);
    const { metadata, blobs, hot } = f.storage;
    const report = await new GarbageCollector({ metadata, blobs, hot, log: silentLogger }).collectGarbage({ grace: 0, now: T0 + 86_400_000 });
    expect(report.unreferencedBlobs).toBe(1);
    expect(metadata.getBlob(blob.digest)).toBeUndefined();
  });
});

describe('HostedContent: adopting cached content (sync into a hosted repository)', () => {
  /** A manifest the cache pulled: stored with a cache link and tag, its blobs committed but linked nowhere hosted. */
  function cacheManifest(f: Fixture, bytes: Buffer, mediaType = OCI_MANIFEST, tag?: string): string {
    const digest = sha256(bytes);
    f.storage.metadata.putManifest({ digest, mediaType, bytes }, { upstream: 'hub', repo: 'library/app' }, tag);
    return digest;
  }

  async function cachedImage(f: Fixture, name: string): Promise<{ digest: string; bytes: Buffer; config: Desc; layer: Desc }> {
    const config = await f.commit(`config ${name}`);
    const layer = await f.commit(`layer ${name}`);
    const bytes = imageManifest(config, [layer]);
    return { digest: cacheManifest(f, bytes), bytes, config, layer };
  }

  it('links a cached image, its config and layers into the repository under the tag, in one step', async () => {
    const f = await open();
    const image = await cachedImage(f, 'v1');
    const adopted = f.hosted.adopt(REG, 'mirrored/app', 'v1', image.digest);
    expect(adopted).toMatchObject({ digest: image.digest, manifests: 1, blobs: 2, newLinks: 3, tagMoved: true });
    expect(adopted.addedBytes).toBe(image.bytes.length + image.config.size + image.layer.size);
    expect(f.hosted.getManifest(REG, 'mirrored/app', 'v1').bytes.equals(image.bytes)).toBe(true);
    expect(f.hosted.hasBlob(REG, 'mirrored/app', image.layer.digest)?.size).toBe(image.layer.size);
    expect(f.hosted.hasBlob(REG, 'mirrored/app', image.config.digest)).toBeDefined();
    expect(f.storage.metadata.hosted.holds(image.layer.digest)).toBe(true);
    expect(f.hosted.tags(REG, 'mirrored/app').tags).toEqual(['v1']);
  });

  it('changes nothing when the same image is adopted again, and moves the tag when it names another image', async () => {
    const f = await open();
    const first = await cachedImage(f, 'v1');
    const second = await cachedImage(f, 'v2');
    f.hosted.adopt(REG, REPO, 'stable', first.digest);
    expect(f.hosted.adopt(REG, REPO, 'stable', first.digest)).toMatchObject({ newLinks: 0, tagMoved: false, addedBytes: 0 });
    expect(f.hosted.adopt(REG, REPO, 'stable', second.digest)).toMatchObject({ newLinks: 3, tagMoved: true });
    expect(f.hosted.getManifest(REG, REPO, 'stable').digest).toBe(second.digest);
    // The first image stays pullable by digest: adopting links, it never unlinks.
    expect(f.hosted.getManifest(REG, REPO, first.digest).digest).toBe(first.digest);
  });

  it('adopts an index with the platform manifests that were copied, leaving out the ones that were not', async () => {
    const f = await open();
    const amd64 = await cachedImage(f, 'amd64');
    const arm64Bytes = imageManifest(await f.commit('config arm64'), [await f.commit('layer arm64')]);
    const index = indexManifest([
      { digest: amd64.digest, size: amd64.bytes.length },
      { digest: sha256(arm64Bytes), size: arm64Bytes.length },
    ]);
    const digest = cacheManifest(f, index, OCI_INDEX);
    const adopted = f.hosted.adopt(REG, REPO, undefined, digest);
    expect(adopted).toMatchObject({ manifests: 2, blobs: 2, tagMoved: false });
    expect(f.hosted.getManifest(REG, REPO, digest).mediaType).toBe(OCI_INDEX);
    expect(f.hosted.getManifest(REG, REPO, amd64.digest).digest).toBe(amd64.digest);
    expect(thrown(() => f.hosted.getManifest(REG, REPO, sha256(arm64Bytes))).code).toBe('MANIFEST_UNKNOWN');
    expect(f.hosted.tags(REG, REPO).tags).toEqual([]);
  });

  it('links nothing when a layer is not stored, naming the missing blob', async () => {
    const f = await open();
    const config = await f.commit('config');
    const bytes = imageManifest(config, [{ digest: sha256('never fetched'), size: 13 }]);
    const digest = cacheManifest(f, bytes);
    const err = thrown(() => f.hosted.adopt(REG, REPO, 'v1', digest));
    expect(err.code).toBe('BLOB_UNKNOWN');
    expect(err.message).toContain(sha256('never fetched'));
    expect(f.storage.metadata.hosted.hasRepository(REG, REPO)).toBe(false);
    expect(f.hosted.usedBytes(REG)).toBe(0);
  });

  it('refuses a manifest that is not stored', async () => {
    const f = await open();
    expect(thrown(() => f.hosted.adopt(REG, REPO, 'v1', sha256('nothing'))).code).toBe('MANIFEST_UNKNOWN');
  });

  it('rolls back an adoption that would take the registry over its quota, and counts content the registry already holds as free', async () => {
    const image = { bytes: 0 };
    const f = await open({ maxSize: 800 });
    const small = await cachedImage(f, 'small');
    image.bytes = small.bytes.length + small.config.size + small.layer.size;
    expect(image.bytes).toBeLessThan(800);
    f.hosted.adopt(REG, REPO, 'small', small.digest);
    const big = await f.commit('x'.repeat(400));
    const bigManifest = cacheManifest(f, imageManifest(small.config, [big]));
    const err = thrown(() => f.hosted.adopt(REG, REPO, 'big', bigManifest));
    expect(err.code).toBe('QUOTA_EXCEEDED');
    expect(thrown(() => f.hosted.getManifest(REG, REPO, 'big')).code).toBe('MANIFEST_UNKNOWN');
    expect(f.hosted.hasBlob(REG, REPO, big.digest)).toBeUndefined();
    expect(f.hosted.usedBytes(REG)).toBe(image.bytes);
    // The same image in another repository of the registry adds no bytes, so the quota allows it.
    expect(f.hosted.adopt(REG, 'team/copy', 'small', small.digest).addedBytes).toBe(0);
  });
});

describe('schema migration', () => {
  it('adds the hosted tables to a version 3 database when it is opened', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'ocimirror-schema-'));
    try {
      const file = path.join(root, 'ocimirror.db');
      new Metadata(file).close();
      const db = new Database(file);
      db.exec('DROP TABLE hosted_tags; DROP TABLE hosted_links;');
      db.pragma('user_version = 3');
      db.close();
      const metadata = new Metadata(file);
      try {
        metadata.hosted.putLink(REG, REPO, sha256('x'), 'blob', T0);
        expect(metadata.hosted.link(REG, REPO, sha256('x'))).toBe('blob');
        expect(metadata.hosted.tagPage(REG, REPO, '', 10)).toEqual([]);
      } finally {
        metadata.close();
      }
      const check = new Database(file, { readonly: true });
      expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      check.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
