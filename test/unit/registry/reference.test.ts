/**
 * @module test/unit/registry/reference
 * Repository names and references, per OCI distribution-spec v1.1 "Pulling manifests":
 *   "Throughout this document, <name> MUST match the following regular expression:
 *    [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
 *   "<reference> as a tag MUST be at most 128 characters in length and MUST match
 *    [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
 *   "<reference> MUST be either (a) the digest of the manifest or (b) a tag."
 * and the implementers' note that many clients limit `<registry>/<name>` to 255 characters
 * (distribution's reference.NameTotalLengthMax = 255 caps the name itself).
 * The names refused here must never reach a cache key or an upstream URL: `..`, `%2e`,
 * empty components and upper case among them.
 */
import { describe, expect, it } from 'vitest';
import { assertName, isDigest, isValidName, isValidTag, parseReference, referenceString } from '../../../src/registry/reference.ts';
import { thrown } from '../../helpers/thrown.ts';

const HEX = 'a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4';

describe('isValidName', () => {
  it('accepts names the distribution-spec grammar allows', () => {
    const valid = [
      'a',
      '0',
      'alpine',
      'library/alpine',
      'my-org/my.repo_name',
      'a__b',
      'a_b',
      'a-b',
      'a---b',
      'a.b.c',
      'a/b/c/d/e/f',
      'foo.bar/baz', // a first component with a dot is a valid name; routing decides if it is a host
      'docker.io/library/alpine',
      'blobs/manifests/uploads',
      '9/8/7',
    ];
    for (const name of valid) expect(isValidName(name), name).toBe(true);
  });

  it('refuses path traversal, encoded or not', () => {
    for (const name of ['.', '..', '../a', 'a/..', 'a/../b', 'a/./b', './a', '%2e%2e', '%2E%2E/a', 'a/%2e%2e/b', 'a%2fb', '..%2fetc', 'a/.../b']) {
      expect(isValidName(name), name).toBe(false);
    }
  });

  it('refuses upper case anywhere', () => {
    for (const name of ['Alpine', 'library/Alpine', 'aLPINE', 'A/b']) expect(isValidName(name), name).toBe(false);
  });

  it('refuses empty names and empty components (double, leading and trailing slashes)', () => {
    for (const name of ['', '/', 'a//b', '/a', 'a/', '//a', 'a/b//', 'a/b/']) expect(isValidName(name), name).toBe(false);
  });

  it('refuses components that begin or end with a separator', () => {
    for (const name of ['-a', 'a-', '_a', 'a_', '.a', 'a.', 'a/-b', 'a/b.', 'a/_b', '__a', 'a__']) {
      expect(isValidName(name), name).toBe(false);
    }
  });

  it('refuses separators the grammar does not list: three underscores, mixed runs, double dots', () => {
    for (const name of ['a___b', 'a..b', 'a._b', 'a_.b', 'a-_b', 'a_-b', 'a.-b', 'a-.b']) expect(isValidName(name), name).toBe(false);
  });

  it('refuses characters outside [a-z0-9._/-]', () => {
    for (const name of ['a b', 'a\tb', 'a\nb', 'a\\b', 'a:b', 'a@b', 'a?b', 'a#b', 'a+b', 'a%b', 'a~b', 'a\0b', 'äpfel', 'a\u2215b', 'a/b\n']) {
      expect(isValidName(name), JSON.stringify(name)).toBe(false);
    }
  });

  it('accepts a name of exactly 255 characters and refuses 256', () => {
    expect(isValidName('a'.repeat(255))).toBe(true);
    expect(isValidName('a'.repeat(256))).toBe(false);
    const withSlashes = Array.from({ length: 128 }, () => 'a').join('/'); // 128 + 127 = 255
    expect(withSlashes).toHaveLength(255);
    expect(isValidName(withSlashes)).toBe(true);
    expect(isValidName(`${withSlashes}b`)).toBe(false);
  });

  it('refuses long adversarial input without catastrophic backtracking', () => {
    // A backtracking blow-up on these would run for far longer than the test timeout.
    expect(isValidName(`${'a-'.repeat(50_000)}!`)).toBe(false);
    expect(isValidName(`${'a_'.repeat(100)}!`)).toBe(false);
    expect(isValidName(`${'a.'.repeat(120)}a`)).toBe(true);
  });
});

describe('assertName', () => {
  it('returns a valid name unchanged', () => {
    expect(assertName('library/alpine')).toBe('library/alpine');
  });

  it('throws NAME_INVALID (400) naming at most 300 characters of the name', () => {
    const err = thrown(() => assertName('Library/Alpine'));
    expect(err.code).toBe('NAME_INVALID');
    expect(err.status).toBe(400);
    expect(err.detail).toEqual({ name: 'Library/Alpine' });
    const long = 'A'.repeat(1000);
    expect(thrown(() => assertName(long)).detail).toEqual({ name: long.slice(0, 300) });
  });
});

describe('isValidTag', () => {
  it('accepts tags the grammar allows, up to 128 characters', () => {
    for (const tag of ['latest', 'v1.2.3', '3.19', '_private', 'A', 'UPPER-case_1.0', '0', 'a'.repeat(128), '_'.repeat(128), 'x..y', 'x--y']) {
      expect(isValidTag(tag), tag).toBe(true);
    }
  });

  it('refuses tags that are empty, too long, start with . or -, or hold other characters', () => {
    for (const tag of ['', 'a'.repeat(129), '.hidden', '-flag', 'a/b', 'a:b', 'a@b', 'a+b', 'a b', 'latest\n', 'ä', '..']) {
      expect(isValidTag(tag), JSON.stringify(tag)).toBe(false);
    }
  });
});

describe('parseReference', () => {
  it('reads text without a colon as a tag', () => {
    expect(parseReference('latest')).toEqual({ kind: 'tag', tag: 'latest' });
  });

  it('reads text with a colon as a digest', () => {
    expect(parseReference(`sha256:${HEX}`)).toEqual({ kind: 'digest', digest: { algorithm: 'sha256', hex: HEX, value: `sha256:${HEX}` } });
  });

  it('answers a reference that is neither a tag nor a digest with MANIFEST_UNKNOWN (404), echoing at most 200 characters', () => {
    const err = thrown(() => parseReference('-bad'));
    expect(err.code).toBe('MANIFEST_UNKNOWN');
    expect(err.status).toBe(404);
    expect(err.detail).toEqual({ reference: '-bad' });
    expect(thrown(() => parseReference('x'.repeat(500))).detail).toEqual({ reference: 'x'.repeat(200) });
    for (const text of ['.hidden', 'bad%2Ftag', 'a/b', 'a@b', '', 'sha256:', ':abc', 'sha256:abc/def', 'latest\n']) {
      expect(thrown(() => parseReference(text)).code, JSON.stringify(text)).toBe('MANIFEST_UNKNOWN');
    }
  });

  it('refuses a digest-shaped reference that is not a sha256 digest with DIGEST_INVALID (400), never as a tag', () => {
    for (const text of ['latest:1', `sha512:${'ab'.repeat(64)}`, `sha256:${HEX.toUpperCase()}`, `sha256:${'g'.repeat(64)}`, `sha256:${HEX.slice(1)}`]) {
      const err = thrown(() => parseReference(text));
      expect(err.code, text).toBe('DIGEST_INVALID');
      expect(err.status).toBe(400);
    }
  });
});

describe('referenceString', () => {
  it('gives back the text a reference was parsed from', () => {
    for (const text of ['latest', 'v1.0', `sha256:${HEX}`]) expect(referenceString(parseReference(text))).toBe(text);
  });
});

describe('isDigest (re-exported)', () => {
  it('tells digests from tags', () => {
    expect(isDigest(`sha256:${HEX}`)).toBe(true);
    expect(isDigest('latest')).toBe(false);
  });
});
