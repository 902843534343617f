/**
 * @module test/unit/sync/sync-file
 * The sync file parser: skopeo sync's own example file reads unchanged, ocimirror's extension
 * keys are taken, and every problem names its key path, all in one pass.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseSyncFile, readSyncFile, SyncFileError } from '../../../src/sync/sync-file.ts';

/** The example of skopeo-sync(1), "YAML file content". */
const SKOPEO_EXAMPLE = `
registry.example.com:
    images:
        busybox: []
        redis:
            - "1.0"
            - "2.0"
            - "sha256:0000000000000000000000000000000011111111111111111111111111111111"
    images-by-tag-regex:
        nginx: ^1\\.13\\.[12]-alpine-perl$
    images-by-semver:
        alpine: ">= 3.12.0"
    credentials:
        username: john
        password: this is a secret
    tls-verify: true
    cert-dir: /home/john/certs
quay.io:
    tls-verify: false
    images:
        coreos/etcd:
            - latest
`;

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function fileWith(text: string): Promise<string> {
  dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-syncfile-'));
  const file = path.join(dir, 'sync.yaml');
  await writeFile(file, text);
  return file;
}

function issuesOf(raw: unknown): readonly string[] {
  try {
    parseSyncFile(raw);
  } catch (err) {
    if (err instanceof SyncFileError) return err.issues;
    throw err;
  }
  throw new Error('expected a SyncFileError');
}

describe('sync file: skopeo format', () => {
  it("reads skopeo-sync's own example file unchanged", async () => {
    const parsed = readSyncFile(await fileWith(SKOPEO_EXAMPLE));
    expect(parsed.sources.map((s) => s.registry)).toEqual(['registry.example.com', 'quay.io']);
    const [example, quay] = parsed.sources;
    expect(example?.images).toEqual({
      busybox: [],
      redis: ['1.0', '2.0', 'sha256:0000000000000000000000000000000011111111111111111111111111111111'],
    });
    expect(example?.tagRegex).toEqual({ nginx: '^1\\.13\\.[12]-alpine-perl$' });
    expect(example?.semver).toEqual({ alpine: '>= 3.12.0' });
    expect(example?.credentials).toEqual({ username: 'john', password: 'this is a secret' });
    expect(example).toMatchObject({ tlsVerify: true, certDir: '/home/john/certs', referrers: false, tagsDeny: [], platforms: undefined, latest: undefined });
    expect(quay).toMatchObject({ tlsVerify: false, images: { 'coreos/etcd': ['latest'] } });
  });

  it('keeps an unquoted tag as written: 1.0 is the tag "1.0", not the number 1', async () => {
    const parsed = readSyncFile(await fileWith('docker.io:\n  images:\n    redis: [1.0, 7, 3.10]\n    busybox:\n'));
    expect(parsed.sources[0]?.images).toEqual({ redis: ['1.0', '7', '3.10'], busybox: [] });
  });

  it('takes the extension keys: platforms, referrers, latest and tags-deny', () => {
    const parsed = parseSyncFile({
      'ghcr.io': { images: { 'org/app': [] }, platforms: ['linux/amd64', 'linux/arm64/v8'], referrers: true, latest: 3, 'tags-deny': ['-rc', 'debug$'] },
      'quay.io': { images: { 'org/tool': ['v1'] }, platforms: 'all', 'tags-deny': '-dev$' },
    });
    expect(parsed.sources[0]).toMatchObject({ platforms: ['linux/amd64', 'linux/arm64/v8'], referrers: true, latest: 3, tagsDeny: ['-rc', 'debug$'] });
    expect(parsed.sources[1]).toMatchObject({ platforms: 'all', tagsDeny: ['-dev$'] });
  });
});

describe('sync file: errors name the key path', () => {
  it('names a bad semver range by registry, key and repository', () => {
    expect(issuesOf({ 'docker.io': { 'images-by-semver': { alpine: 'not a range!' } } })).toEqual(['docker.io.images-by-semver.alpine: invalid semver range']);
  });

  it('reports every problem of the file in one pass', () => {
    const issues = issuesOf({
      'docker.io': {
        images: { alpine: ['3.19', 'bad tag!'], 'Upper/Case': [] },
        'images-by-tag-regex': { nginx: '(' },
        'tls-verify': 'yes',
        latest: 0,
        platforms: ['linux'],
        colour: 'blue',
      },
      'quay.io': { credentials: { username: 'u' }, images: { a: [] } },
      notahost: { images: { a: [] } },
      'ghcr.io': {},
    });
    expect(issues).toEqual(expect.arrayContaining([
      'docker.io.images.alpine[1]: expected a tag or a sha256 digest',
      expect.stringMatching(/^docker\.io\.images\.Upper\/Case: invalid repository name/),
      'docker.io.images-by-tag-regex.nginx: invalid regular expression',
      expect.stringMatching(/^docker\.io\.tls-verify: /),
      'docker.io.latest: expected at least 1',
      'docker.io.platforms[0]: expected os/arch[/variant] such as linux/amd64',
      "docker.io: unknown key(s) 'colour'",
      'quay.io.credentials.password is required',
      'notahost: expected a registry host such as docker.io, quay.io or localhost:5000',
      'ghcr.io: lists no images (images, images-by-tag-regex or images-by-semver)',
    ]));
    expect(issues).toHaveLength(10);
  });

  it('says what a file that is not a mapping should be, and names the file', async () => {
    const file = await fileWith('- docker.io/library/alpine\n');
    expect(() => readSyncFile(file)).toThrow(`invalid sync file ${file}:\n  - expected a mapping of registries to their images`);
  });

  it('reports YAML that does not parse, and a file that cannot be read', async () => {
    const file = await fileWith('docker.io:\n  images: [\n');
    expect(() => readSyncFile(file)).toThrow(/not valid YAML/);
    expect(() => readSyncFile(path.join(dir as string, 'missing.yaml'))).toThrow(/cannot read it/);
  });
});
