/**
 * @module test/unit/registry/v2-path
 * The /v2/ request path → endpoint, per the OCI distribution-spec v1.1 endpoint table:
 *   end-1  /v2/                                 end-2  /v2/<name>/blobs/<digest>
 *   end-3  /v2/<name>/manifests/<reference>     end-4a /v2/<name>/blobs/uploads/
 *   end-5/6/13 /v2/<name>/blobs/uploads/<reference>
 *   end-8a /v2/<name>/tags/list                 end-12a /v2/<name>/referrers/<digest>
 * plus distribution's /v2/_catalog. `<name>` contains '/', and a component of it may itself be
 * `blobs`, `manifests`, `tags` or `uploads` ("blobs/manifests/uploads" matches the name grammar),
 * so the endpoint is decided by the rightmost segments. Names are not validated here (the
 * router does that after stripping a registry prefix); unknown paths are a 404 NOT_FOUND.
 */
import { describe, expect, it } from 'vitest';
import { RegistryError } from '../../../src/registry/errors.ts';
import { assertName } from '../../../src/registry/reference.ts';
import { parseV2Path } from '../../../src/registry/v2-path.ts';
import { thrown } from '../../helpers/thrown.ts';

const DIGEST = 'sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4';

describe('parseV2Path: every endpoint kind', () => {
  it('reads /v2 and /v2/ as the base endpoint (end-1)', () => {
    expect(parseV2Path('/v2/')).toEqual({ kind: 'base' });
    expect(parseV2Path('/v2')).toEqual({ kind: 'base' });
  });

  it('reads /v2/_catalog as the catalog', () => {
    expect(parseV2Path('/v2/_catalog')).toEqual({ kind: 'catalog' });
  });

  it('reads manifests by tag and by digest (end-3)', () => {
    expect(parseV2Path('/v2/library/alpine/manifests/latest')).toEqual({ kind: 'manifest', name: 'library/alpine', reference: 'latest' });
    expect(parseV2Path(`/v2/alpine/manifests/${DIGEST}`)).toEqual({ kind: 'manifest', name: 'alpine', reference: DIGEST });
  });

  it('reads blobs (end-2)', () => {
    expect(parseV2Path(`/v2/library/alpine/blobs/${DIGEST}`)).toEqual({ kind: 'blob', name: 'library/alpine', digest: DIGEST });
  });

  it('reads upload paths with and without a trailing slash or session id (end-4a, end-5, end-6, end-13)', () => {
    for (const p of ['/v2/foo/bar/blobs/uploads', '/v2/foo/bar/blobs/uploads/']) {
      expect(parseV2Path(p), p).toEqual({ kind: 'upload', name: 'foo/bar', session: undefined });
    }
    expect(parseV2Path('/v2/foo/bar/blobs/uploads/6f1c-4e2a')).toEqual({ kind: 'upload', name: 'foo/bar', session: '6f1c-4e2a' });
    // 'uploadsX' is a blob reference (refused later as a digest), not a session of 'uploads'.
    expect(parseV2Path('/v2/foo/blobs/uploadsX')).toEqual({ kind: 'blob', name: 'foo', digest: 'uploadsX' });
  });

  it('reads tags/list (end-8a)', () => {
    expect(parseV2Path('/v2/library/alpine/tags/list')).toEqual({ kind: 'tags', name: 'library/alpine' });
  });

  it('reads referrers (end-12a)', () => {
    expect(parseV2Path(`/v2/library/alpine/referrers/${DIGEST}`)).toEqual({ kind: 'referrers', name: 'library/alpine', digest: DIGEST });
  });

  it('keeps a registry prefix as part of the name: stripping it is the router\'s job', () => {
    expect(parseV2Path('/v2/docker.io/library/alpine/manifests/latest')).toEqual({
      kind: 'manifest',
      name: 'docker.io/library/alpine',
      reference: 'latest',
    });
  });
});

describe('parseV2Path: names whose components look like endpoint words', () => {
  it('decides the endpoint from the rightmost segments', () => {
    const cases: Array<[string, unknown]> = [
      ['/v2/blobs/manifests/latest', { kind: 'manifest', name: 'blobs', reference: 'latest' }],
      ['/v2/manifests/manifests/latest', { kind: 'manifest', name: 'manifests', reference: 'latest' }],
      [`/v2/manifests/blobs/${DIGEST}`, { kind: 'blob', name: 'manifests', digest: DIGEST }],
      [`/v2/blobs/blobs/${DIGEST}`, { kind: 'blob', name: 'blobs', digest: DIGEST }],
      ['/v2/a/manifests/b/manifests/c', { kind: 'manifest', name: 'a/manifests/b', reference: 'c' }],
      [`/v2/a/blobs/b/blobs/${DIGEST}`, { kind: 'blob', name: 'a/blobs/b', digest: DIGEST }],
      ['/v2/a/blobs/uploads/x/manifests/latest', { kind: 'manifest', name: 'a/blobs/uploads/x', reference: 'latest' }],
      [`/v2/a/manifests/latest/blobs/${DIGEST}`, { kind: 'blob', name: 'a/manifests/latest', digest: DIGEST }],
      ['/v2/blobs/blobs/uploads/', { kind: 'upload', name: 'blobs', session: undefined }],
      ['/v2/uploads/blobs/uploads', { kind: 'upload', name: 'uploads', session: undefined }],
      ['/v2/tags/tags/list', { kind: 'tags', name: 'tags' }],
      ['/v2/tags/list/tags/list', { kind: 'tags', name: 'tags/list' }],
      ['/v2/a/tags/list/manifests/latest', { kind: 'manifest', name: 'a/tags/list', reference: 'latest' }],
      [`/v2/referrers/referrers/${DIGEST}`, { kind: 'referrers', name: 'referrers', digest: DIGEST }],
      ['/v2/_catalog/manifests/latest', { kind: 'manifest', name: '_catalog', reference: 'latest' }],
    ];
    for (const [p, expected] of cases) expect(parseV2Path(p), p).toEqual(expected);
  });

  it('reads a blob whose "digest" is the word uploads as an upload, not a blob', () => {
    expect(parseV2Path('/v2/foo/blobs/uploads')).toEqual({ kind: 'upload', name: 'foo', session: undefined });
  });
});

describe('parseV2Path: names are passed through unvalidated', () => {
  it('returns traversal and encoded names as written, for assertName to refuse', () => {
    for (const name of ['..', '../etc', '%2e%2e/x', 'a//b', 'UPPER']) {
      const endpoint = parseV2Path(`/v2/${name}/manifests/latest`);
      expect(endpoint, name).toEqual({ kind: 'manifest', name, reference: 'latest' });
      expect(() => assertName(name), name).toThrow(RegistryError);
    }
  });
});

describe('parseV2Path: unknown paths', () => {
  it('answers NOT_FOUND (404) for paths outside the endpoint table', () => {
    const unknown = [
      '',
      '/',
      '/v1/',
      '/v3/',
      '/v2//',
      '/v2x',
      '/v2/foo',
      '/v2/foo/',
      '/v2/foo/manifests',
      '/v2/foo/manifests/',
      '/v2/foo/manifests/a/',
      '/v2/foo/blobs',
      '/v2/foo/blobs/',
      '/v2/foo/blobs/uploads/a/b',
      '/v2/foo/tags',
      '/v2/foo/tags/',
      '/v2/foo/tags/list/',
      '/v2/foo/tags/lists',
      '/v2/foo/referrers/',
      '/v2/_catalog/',
      '/v2/manifests/latest',
      `/v2/blobs/${DIGEST}`,
      '/v2/tags/list',
      'v2/foo/manifests/latest',
      '/V2/foo/manifests/latest',
    ];
    for (const p of unknown) {
      const err = thrown(() => parseV2Path(p));
      expect(err.code, p).toBe('NOT_FOUND');
      expect(err.status, p).toBe(404);
      expect(err.message, p).toBe('unknown registry API endpoint');
    }
  });

  it('echoes at most 200 characters of the path in the detail', () => {
    const p = `/v2/${'x'.repeat(500)}`;
    expect(thrown(() => parseV2Path(p)).detail).toEqual({ path: p.slice(0, 200) });
  });
});

describe('parseV2Path: very long paths', () => {
  it('still parses a path of exactly 2048 characters', () => {
    const name = 'a'.repeat(2048 - '/v2/'.length - '/manifests/latest'.length);
    const p = `/v2/${name}/manifests/latest`;
    expect(p).toHaveLength(2048);
    expect(parseV2Path(p)).toEqual({ kind: 'manifest', name, reference: 'latest' });
  });

  it('refuses a well-formed path one character longer without matching it', () => {
    const name = 'a'.repeat(2049 - '/v2/'.length - '/manifests/latest'.length);
    expect(thrown(() => parseV2Path(`/v2/${name}/manifests/latest`)).code).toBe('NOT_FOUND');
  });

  it('refuses a megabyte of slashes and endpoint words as NOT_FOUND, past the length cap', () => {
    // Backtracking over this with the right-anchored patterns would outlast the test timeout.
    const huge = `/v2/${'blobs/manifests/'.repeat(65_536)}latest`;
    expect(thrown(() => parseV2Path(huge)).code).toBe('NOT_FOUND');
  });
});
