/**
 * @module test/unit/cache/bucket-pieces
 * The pure parts of the blob bucket: its key layout, fixed-size parts cut from a stream, the part size
 * for very large blobs, and the shared-credentials file reader.
 */
import { describe, expect, it } from 'vitest';
import { partSizeFor, PART_SIZE } from '../../../src/cache/bucket/blob-bucket.ts';
import { BucketLayout } from '../../../src/cache/bucket/bucket-layout.ts';
import { fixedParts } from '../../../src/cache/bucket/fixed-parts.ts';
import { parseCredentialsFile } from '../../../src/cache/bucket/s3-client.ts';

const HEX = 'ab'.repeat(32);

describe('the bucket layout', () => {
  const layout = new BucketLayout('mirror/');

  it('puts blobs under a two-digit shard and manifests flat, all under the prefix', () => {
    expect(layout.blobKey(`sha256:${HEX}`)).toBe(`mirror/blobs/sha256/ab/${HEX}`);
    expect(layout.manifestKey(`sha256:${HEX}`)).toBe(`mirror/manifests/sha256/${HEX}`);
    expect(layout.tmpKey('u1')).toBe('mirror/tmp/u1');
  });

  it('refuses anything but a sha256 digest before it can name a key', () => {
    for (const bad of ['sha256:../../x', `sha512:${HEX}`, `sha256:${HEX.toUpperCase()}`, HEX]) {
      expect(() => layout.blobKey(bad)).toThrow(expect.objectContaining({ code: 'DIGEST_INVALID' }));
    }
  });

  it('reads a digest back from its blob key and skips keys that are not blobs', () => {
    expect(layout.digestOfBlobKey(`mirror/blobs/sha256/ab/${HEX}`)).toBe(`sha256:${HEX}`);
    expect(layout.digestOfBlobKey(`mirror/blobs/sha256/cd/${HEX}`)).toBeUndefined();
    expect(layout.digestOfBlobKey(`other/blobs/sha256/ab/${HEX}`)).toBeUndefined();
    expect(layout.digestOfBlobKey(`mirror/blobs/sha256/ab/${HEX}.tmp`)).toBeUndefined();
  });
});

describe('fixedParts', () => {
  async function cut(chunks: number[], partSize: number): Promise<{ parts: Buffer[]; seen: number }> {
    let n = 0;
    const source = (async function* () {
      for (const len of chunks) yield Buffer.alloc(len, n++ % 256);
    })();
    let seen = 0;
    const parts: Buffer[] = [];
    for await (const p of fixedParts(source, partSize, (c) => (seen += c.length))) parts.push(p);
    return { parts, seen };
  }

  it('cuts parts of exactly partSize, the last one shorter, keeping every byte in order', async () => {
    const { parts, seen } = await cut([3, 10, 1, 7], 5);
    expect(parts.map((p) => p.length)).toEqual([5, 5, 5, 5, 1]);
    expect(Buffer.concat(parts)).toEqual(Buffer.concat([Buffer.alloc(3, 0), Buffer.alloc(10, 1), Buffer.alloc(1, 2), Buffer.alloc(7, 3)]));
    expect(seen).toBe(21);
  });

  it('yields nothing for an empty stream and no empty last part for an exact multiple', async () => {
    expect((await cut([], 5)).parts).toEqual([]);
    expect((await cut([4, 6], 5)).parts.map((p) => p.length)).toEqual([5, 5]);
  });
});

describe('partSizeFor', () => {
  it('keeps the fixed part size until a blob would need more than 10,000 parts', () => {
    expect(partSizeFor(0)).toBe(PART_SIZE);
    expect(partSizeFor(10_000 * PART_SIZE)).toBe(PART_SIZE);
    const big = 10_000 * PART_SIZE + 1;
    expect(partSizeFor(big)).toBeGreaterThan(PART_SIZE);
    expect(Math.ceil(big / partSizeFor(big))).toBeLessThanOrEqual(10_000);
  });
});

describe('parseCredentialsFile', () => {
  it('reads the default profile and ignores the others', () => {
    const text = '[other]\naws_access_key_id = no\naws_secret_access_key = no\n\n[default]\n# comment\naws_access_key_id = AKID\naws_secret_access_key=s/e=cret\n';
    expect(parseCredentialsFile(text)).toEqual({ accessKeyId: 'AKID', secretAccessKey: 's/e=cret', sessionToken: undefined });
  });

  it('finds nothing when a key is missing', () => {
    expect(parseCredentialsFile('[default]\naws_access_key_id = AKID\n')).toBeUndefined();
  });
});
