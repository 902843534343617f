/**
 * @module test/unit/registry/digest
 * Digest parsing. OCI image-spec "Digests": `digest ::= algorithm ":" encoded`, with
 * `algorithm ::= algorithm-component (algorithm-separator algorithm-component)*` and
 * sha256 encoded as exactly 64 lower-case hex characters (`[a-f0-9]{64}`). ocimirror accepts
 * only sha256, because the digest becomes a file name and a cache key; anything else is
 * DIGEST_INVALID (distribution-spec v1.1 "Error Codes", code-4), status 400.
 */
import { describe, expect, it } from 'vitest';
import { isDigest, isDigestShaped, parseDigest } from '../../../src/registry/digest.ts';
import { RegistryError } from '../../../src/registry/errors.ts';
import { thrown } from '../../helpers/thrown.ts';

const HEX = 'a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4';

describe('parseDigest', () => {
  it('splits a sha256 digest into algorithm, hex and the original text', () => {
    expect(parseDigest(`sha256:${HEX}`)).toEqual({ algorithm: 'sha256', hex: HEX, value: `sha256:${HEX}` });
  });

  it('accepts every lower-case hex digit', () => {
    const hex = '0123456789abcdef'.repeat(4);
    expect(parseDigest(`sha256:${hex}`).hex).toBe(hex);
  });

  it('refuses sha256 with upper-case hex, saying the algorithm or encoding is unsupported', () => {
    const err = thrown(() => parseDigest(`sha256:${HEX.toUpperCase()}`));
    expect(err.code).toBe('DIGEST_INVALID');
    expect(err.status).toBe(400);
    expect(err.message).toMatch(/unsupported digest algorithm or encoding/);
  });

  it('refuses well-formed digests of other algorithms as unsupported rather than garbage', () => {
    for (const text of [`sha512:${'ab'.repeat(64)}`, `sha384:${'ab'.repeat(48)}`, `blake3:${HEX}`, `multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8`]) {
      const err = thrown(() => parseDigest(text));
      expect(err.code, text).toBe('DIGEST_INVALID');
      expect(err.message, text).toMatch(/unsupported/);
    }
  });

  it('refuses sha256 digests of the wrong length as unsupported', () => {
    for (const hex of [HEX.slice(1), `${HEX}0`, 'ab']) {
      expect(thrown(() => parseDigest(`sha256:${hex}`)).message).toMatch(/unsupported/);
    }
  });

  it('refuses text outside the digest grammar as an invalid format', () => {
    for (const text of ['', 'sha256', 'sha256:', `:${HEX}`, HEX, `SHA256:${HEX}`, `sha256::${HEX}`, 'sha256:../../etc/passwd', `sha256:${HEX}/x`, `sha256:${HEX} `, ` sha256:${HEX}`]) {
      const err = thrown(() => parseDigest(text));
      expect(err.code, JSON.stringify(text)).toBe('DIGEST_INVALID');
      expect(err.message, JSON.stringify(text)).toBe('invalid digest format');
    }
  });

  it('does not let a trailing newline slip past the end anchor', () => {
    expect(() => parseDigest(`sha256:${HEX}\n`)).toThrow(RegistryError);
    expect(isDigest(`sha256:${HEX}\n`)).toBe(false);
  });

  it('echoes at most 200 characters of the offending text in the detail', () => {
    const long = `sha256:${'z'.repeat(10_000)}`;
    const err = thrown(() => parseDigest(long));
    expect(err.detail).toEqual({ digest: long.slice(0, 200) });
  });
});

describe('isDigest', () => {
  it('agrees with parseDigest on what is acceptable', () => {
    for (const text of [`sha256:${HEX}`, `sha256:${HEX.toUpperCase()}`, `sha512:${'ab'.repeat(64)}`, 'latest', '', `sha256:${HEX}x`]) {
      let parses = true;
      try {
        parseDigest(text);
      } catch {
        parses = false;
      }
      expect(isDigest(text), text).toBe(parses);
    }
  });
});

describe('isDigestShaped', () => {
  it('accepts any algorithm:encoded text, valid for ocimirror or not', () => {
    for (const text of [`sha256:${HEX}`, `sha256:${HEX.toUpperCase()}`, `sha512:${'ab'.repeat(64)}`, 'md5:abc', 'multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8', 'latest:1']) {
      expect(isDigestShaped(text), text).toBe(true);
    }
  });

  it('refuses text without an algorithm, without an encoded part, or with characters outside the grammar', () => {
    for (const text of ['latest', '', 'sha256:', ':abc', 'SHA256:abc', 'sha256:a/b', 'sha256:a:b', '-x', 'sha256:abc\n']) {
      expect(isDigestShaped(text), JSON.stringify(text)).toBe(false);
    }
  });
});
