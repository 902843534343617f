/**
 * The fill's hash-and-write (src/cache/blobs/fill-writer.ts), both kinds: the native one (threadpool,
 * native/sendfile/hash-write.c) and Node's. Against real temp files: the bytes land where asked,
 * the digest is sha256 of everything passed in, a hash-only batch writes nothing, and a failed
 * write still hashed its whole batch (a fill that starts relaying on a full disk relies on it).
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAddon, nativeAddonError, type NativeAddon } from '../../../../src/util/native-addon.ts';
import { createFillWriter, nativeFillWriter, nodeFillWriter, pieces, WRITE_PIECE, type FillWriter } from '../../../../src/cache/blobs/fill-writer.ts';

const sha = (...chunks: Buffer[]) => {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ocimirror-fill-writer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('pieces', () => {
  it('cuts chunks into runs of at most the given size, in order, without copying', () => {
    const chunks = [Buffer.alloc(0), randomBytes(10), randomBytes(3), randomBytes(25), randomBytes(7)];
    const out = pieces(chunks, 8);
    expect(out.map((p) => p.size)).toEqual([8, 8, 8, 8, 8, 5]);
    expect(out.map((p) => p.offset)).toEqual([0, 8, 16, 24, 32, 40]);
    for (const p of out) expect(p.buffers.reduce((n, b) => n + b.length, 0)).toBe(p.size);
    expect(Buffer.concat(out.flatMap((p) => p.buffers)).equals(Buffer.concat(chunks))).toBe(true);
    // Views into the chunks: the bytes are not copied.
    expect(out[0]!.buffers[0]!.buffer).toBe(chunks[1]!.buffer);
  });

  it('gives nothing for no bytes and one piece for a batch that fits', () => {
    expect(pieces([], 8)).toEqual([]);
    expect(pieces([Buffer.alloc(0)], 8)).toEqual([]);
    expect(pieces([Buffer.alloc(8)], 8).map((p) => p.size)).toEqual([8]);
  });
});

const addon = nativeAddon();
const native = () => (addon ? nativeFillWriter(addon) : undefined);

const kinds: Array<[string, () => FillWriter | undefined]> = [
  ['native', native],
  ['Node', nodeFillWriter],
];

describe.each(kinds)('the %s fill writer', (kind, make) => {
  const skip = kind === 'native' && make() === undefined;

  it.skipIf(skip)(`writes batches at their positions and digests every byte (${kind === 'native' ? (nativeAddonError() ?? 'addon loaded') : 'always'})`, async () => {
    const writer = make()!;
    const file = path.join(dir, `${kind}-bytes`);
    const fd = openSync(file, 'w+');
    try {
      // Pieces of several WRITE_PIECEs, odd sizes and empty chunks, in two batches.
      const first = [randomBytes(WRITE_PIECE + 5), Buffer.alloc(0), randomBytes(17), randomBytes(3 * WRITE_PIECE - 1)];
      const second = [randomBytes(1), randomBytes(WRITE_PIECE)];
      const firstBytes = first.reduce((n, b) => n + b.length, 0);
      await writer.write(first, fd, 0);
      await writer.write(second, fd, firstBytes);
      expect(writer.digest()).toBe(sha(...first, ...second));
      expect(readFileSync(file).equals(Buffer.concat([...first, ...second]))).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it.skipIf(skip)('hashes without writing when given no file', async () => {
    const writer = make()!;
    const file = path.join(dir, `${kind}-hash-only`);
    const fd = openSync(file, 'w+');
    try {
      const stored = randomBytes(1000);
      const relayed = randomBytes(3000);
      await writer.write([stored], fd, 0);
      await writer.write([relayed], undefined, 0);
      expect(writer.digest()).toBe(sha(stored, relayed));
      expect(readFileSync(file).equals(stored)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it.skipIf(skip)('fails a write with its errno code, having hashed the whole batch', async () => {
    const writer = make()!;
    const file = path.join(dir, `${kind}-read-only`);
    closeSync(openSync(file, 'w'));
    const readOnly = openSync(file, 'r');
    try {
      const batch = [randomBytes(WRITE_PIECE * 2 + 3)];
      await expect(writer.write(batch, readOnly, 0)).rejects.toMatchObject({ code: 'EBADF' });
      const after = randomBytes(10);
      await writer.write([after], undefined, 0);
      expect(writer.digest()).toBe(sha(...batch, after));
    } finally {
      closeSync(readOnly);
    }
  });
});

describe.skipIf(addon === undefined)('the native hasher', () => {
  it('refuses a second write while one runs, and any use after its digest', async () => {
    const writer = native()!;
    const running = writer.write([randomBytes(4 << 20)], undefined, 0);
    await expect(writer.write([Buffer.from('x')], undefined, 0)).rejects.toMatchObject({ code: 'EBUSY' });
    expect(() => writer.digest()).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    await running;
    writer.digest();
    expect(() => writer.digest()).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    await expect(writer.write([Buffer.from('x')], undefined, 0)).rejects.toMatchObject({ code: 'EINVAL' });
  });
});

describe('createFillWriter', () => {
  it('hashes and writes in Node when given no addon (server.nativeAddon: false), and natively when given one', async () => {
    const node = createFillWriter(undefined);
    await node.write([Buffer.from('pure')], undefined, 0);
    expect(node.digest()).toBe(sha(Buffer.from('pure')));
    if (addon) {
      const calls: number[] = [];
      const spied = Object.create(addon, { hasher: { value: () => (calls.push(1), addon.hasher()) } }) as NativeAddon;
      const writer = createFillWriter(spied);
      await writer.write([Buffer.from('native')], undefined, 0);
      expect(writer.digest()).toBe(sha(Buffer.from('native')));
      expect(calls).toEqual([1]);
    }
  });
});
