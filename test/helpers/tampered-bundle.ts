/**
 * @module test/helpers/tampered-bundle
 * A copy of a bundle (an uncompressed tar) with one byte of a blob's content flipped: what a
 * damaged medium or a tampering hand leaves, for tests that must see the digest named.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { expect } from 'vitest';

/** Writes `out`: `tar` with the 11th content byte of `blobs/sha256/<hex of digest>` flipped. */
export async function writeTamperedBundle(tar: string, digest: string, out: string): Promise<string> {
  const bytes = await readFile(tar);
  const header = bytes.indexOf(Buffer.from(`blobs/sha256/${digest.slice('sha256:'.length)}\0`));
  expect(header).toBeGreaterThan(0);
  // The entry's 512-byte header, then its content.
  bytes[header + 512 + 10] = (bytes[header + 512 + 10] as number) ^ 0xff;
  await writeFile(out, bytes);
  return out;
}
