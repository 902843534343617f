import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findVolumeManifest, readVolumeManifest, readVolumes, VolumeWriter, volumeManifestName, writeVolumeManifest } from '../../../src/bundle/tar-volumes.ts';

async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('tar volumes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'volumes-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const split = async (data: Buffer, maxSize: number) => {
    const base = path.join(dir, 'b.tar');
    const writer = new VolumeWriter(base, maxSize);
    await pipeline(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), writer);
    const manifest = writer.manifest('none');
    await writeVolumeManifest(volumeManifestName(base), manifest);
    return { base, manifest };
  };

  it('cuts a stream into volumes of at most maxSize and reads them back in order', async () => {
    const data = Buffer.from(Array.from({ length: 2500 }, (_, i) => i % 251));
    const { base, manifest } = await split(data, 1024);
    expect(manifest.volumes.map((v) => [v.name, v.size])).toEqual([['b.tar.000', 1024], ['b.tar.001', 1024], ['b.tar.002', 452]]);
    expect(manifest.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    const found = await findVolumeManifest(`${base}.000`);
    expect(found).toBe(volumeManifestName(base));
    const read = await readVolumeManifest(found!);
    expect((await collect(readVolumes(dir, read))).equals(data)).toBe(true);
  });

  it('names a volume that is damaged or truncated', async () => {
    const data = Buffer.alloc(3000, 7);
    const { base, manifest } = await split(data, 1024);
    const file = `${base}.001`;
    const original = await readFile(file);
    await writeFile(file, Buffer.concat([original.subarray(0, 10), Buffer.from([8]), original.subarray(11)]));
    await expect(collect(readVolumes(dir, manifest))).rejects.toThrow(/volume b\.tar\.001 does not match/);
    await writeFile(file, original.subarray(0, 500));
    await expect(collect(readVolumes(dir, manifest))).rejects.toThrow(/volume b\.tar\.001 holds 500 bytes/);
  });
});
