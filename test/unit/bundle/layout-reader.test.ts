import { PassThrough, Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { classifyEntry, dirEntries, openTarStream, tarEntries, type LayoutEntry } from '../../../src/bundle/layout-reader.ts';
import { entriesToTar } from '../../../src/bundle/layout-writer.ts';
import { BundleError } from '../../../src/bundle/bundle-error.ts';

const HEX = createHash('sha256').update('x').digest('hex');

/** A tar of `entries` (name, body or a type), as bytes. */
async function makeTar(entries: Array<{ name: string; body?: string; type?: 'symlink' | 'link' | 'directory' | 'character-device'; linkname?: string }>): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type) pack.entry({ name: e.name, type: e.type, linkname: e.linkname });
    else pack.entry({ name: e.name }, e.body ?? '');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

async function readAll(gen: AsyncGenerator<LayoutEntry>): Promise<string[]> {
  const names: string[] = [];
  for await (const e of gen) {
    names.push(e.kind === 'blob' ? e.digest.value : e.name);
    e.body.resume();
  }
  return names;
}

const LAYOUT = [{ name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' }, { name: 'index.json', body: '{}' }];

describe('layout reader', () => {
  it('yields oci-layout, index.json and blobs named by their digest, with ./ prefixes and directories allowed', async () => {
    const bytes = await makeTar([{ name: './', type: 'directory' }, { name: './oci-layout', body: '{}' }, { name: 'index.json' }, { name: 'blobs/', type: 'directory' }, { name: 'blobs/sha256/', type: 'directory' }, { name: `blobs/sha256/${HEX}`, body: 'x' }]);
    expect(await readAll(tarEntries(Readable.from([bytes])))).toEqual(['oci-layout', 'index.json', `sha256:${HEX}`]);
  });

  it('refuses names that climb out of the layout or are absolute', () => {
    expect(() => classifyEntry('../etc/passwd', 'file')).toThrow(/climbs out/);
    expect(() => classifyEntry('blobs/sha256/../../x', 'file')).toThrow(/climbs out/);
    expect(() => classifyEntry('/etc/passwd', 'file')).toThrow(/absolute/);
    expect(() => classifyEntry('blobs\\sha256\\x', 'file')).toThrow(/backslash/);
  });

  it('refuses symbolic links, hard links and devices in a tar', async () => {
    for (const type of ['symlink', 'link', 'character-device'] as const) {
      const bytes = await makeTar([...LAYOUT, { name: `blobs/sha256/${HEX}`, type, linkname: '/etc/passwd' }]);
      await expect(readAll(tarEntries(Readable.from([bytes])))).rejects.toThrow(new RegExp(`is a ${type}`));
    }
  });

  it('refuses blob names that are not sha256 digests, and other algorithms', () => {
    expect(() => classifyEntry('blobs/sha256/XYZ', 'file')).toThrow(/not named by a sha256 digest/);
    expect(() => classifyEntry(`blobs/sha256/${HEX.toUpperCase()}`, 'file')).toThrow(/not named by a sha256 digest/);
    expect(() => classifyEntry(`blobs/sha512/${HEX}${HEX}`, 'file')).toThrow(/only sha256/);
  });

  it('skips other regular files with a warning', async () => {
    const warnings: string[] = [];
    const bytes = await makeTar([...LAYOUT, { name: 'README', body: 'hi' }]);
    expect(await readAll(tarEntries(Readable.from([bytes]), { onWarning: (m) => warnings.push(m) }))).toEqual(['oci-layout', 'index.json']);
    expect(warnings[0]).toContain('README');
  });

  it('refuses an entry that appears twice', async () => {
    const bytes = await makeTar([...LAYOUT, { name: `blobs/sha256/${HEX}`, body: 'x' }, { name: `blobs/sha256/${HEX}`, body: 'y' }]);
    await expect(readAll(tarEntries(Readable.from([bytes])))).rejects.toThrow(/appears twice/);
  });

  it('refuses an archive cut inside an entry, and one cut at an entry boundary without its end blocks', async () => {
    const bytes = await makeTar([...LAYOUT, { name: `blobs/sha256/${HEX}`, body: 'x'.repeat(2000) }]);
    await expect(readAll(tarEntries(Readable.from([bytes.subarray(0, bytes.length - 1024 - 700)])))).rejects.toThrow(/cannot be read|truncated/);
    await expect(readAll(tarEntries(Readable.from([bytes.subarray(0, bytes.length - 1024)])))).rejects.toThrow(/truncated/);
  });

  it('refuses a symbolic link in a layout directory', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'layout-'));
    try {
      await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
      await writeFile(path.join(dir, 'oci-layout'), '{}');
      await writeFile(path.join(dir, 'index.json'), '{}');
      await symlink('/etc/passwd', path.join(dir, 'blobs', 'sha256', HEX));
      await expect(readAll(dirEntries(dir))).rejects.toThrow(/symbolic link/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads a tar from a request-like stream and, when the reader stops early, leaves that stream to its owner', async () => {
    const bytes = await makeTar([...LAYOUT, { name: `blobs/sha256/${HEX}`, body: 'x' }, { name: 'trailing-file', body: 'y'.repeat(10000) }]);
    const whole = new PassThrough();
    whole.end(bytes);
    expect(await readAll(openTarStream(whole).entries)).toEqual(['oci-layout', 'index.json', `sha256:${HEX}`]);

    const body = new PassThrough();
    body.write(bytes.subarray(0, 2048));
    const opened = openTarStream(body);
    const first = await opened.entries.next();
    expect(first.done).toBe(false);
    await opened.entries.return(undefined);
    expect(body.destroyed).toBe(false);
    body.end(bytes.subarray(2048));
  });

  it('fails the read, as truncated, when the sender goes away mid-archive', async () => {
    const bytes = await makeTar([...LAYOUT, { name: `blobs/sha256/${HEX}`, body: 'x'.repeat(4096) }]);
    const body = new PassThrough();
    body.write(bytes.subarray(0, 2048));
    const reading = readAll(openTarStream(body).entries);
    setImmediate(() => body.destroy(new Error('socket hang up')));
    await expect(reading).rejects.toThrow(BundleError);
  });

  it('packs entries read from a layout directory into a tar the reader takes back', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'layout-pack-'));
    try {
      await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
      await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(path.join(dir, 'index.json'), '{}');
      await writeFile(path.join(dir, 'blobs', 'sha256', HEX), 'x');
      const out = new PassThrough();
      const packing = entriesToTar(dirEntries(dir), out);
      const names = readAll(tarEntries(out));
      await packing;
      expect(await names).toEqual(['oci-layout', 'index.json', `sha256:${HEX}`]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
