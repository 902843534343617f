/**
 * @module bundle/compression
 * Compression of a bundle's tar stream: none, gzip (Node's zlib) or zstd. Node 20's zlib has no
 * zstd, so zstd runs as the `zstd` program (Debian package `zstd`) in a child process: a pipe in
 * and a pipe out keep it streaming, with the same backpressure as a Transform. Reading detects
 * the format from the stream's first bytes, whatever the file is called.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { Duplex, PassThrough, type Readable, type Writable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { BundleError } from './bundle-error.ts';

export type Compression = 'none' | 'gzip' | 'zstd';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** The compression a file name implies (`.tar.gz`, `.tgz`, `.tar.zst`), else 'none'. */
export function compressionForName(name: string): Compression {
  const lower = name.toLowerCase();
  if (lower.endsWith('.gz') || lower.endsWith('.tgz')) return 'gzip';
  if (lower.endsWith('.zst') || lower.endsWith('.zstd')) return 'zstd';
  return 'none';
}

/** The compression whose magic number `head` (the first bytes of a stream) starts with. */
export function detectCompression(head: Buffer): Compression {
  if (head.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip';
  if (head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd';
  return 'none';
}

/** Throws a usage error naming the package when `zstd` is not on PATH. */
export function assertZstdAvailable(envPath = process.env.PATH ?? ''): void {
  const found = envPath.split(path.delimiter).some((dir) => {
    try {
      accessSync(path.join(dir, 'zstd'), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (!found) {
    throw new BundleError('BUNDLE_USAGE', 'zstd compression needs the zstd program, which is not installed (apt-get install -y zstd); use --compress gzip or none instead');
  }
}

/** A stream that compresses what is written to it. */
export function compressor(kind: Compression): Duplex {
  if (kind === 'gzip') return createGzip({ level: 6 });
  if (kind === 'zstd') return zstdProcess(['-q', '-c', '-3', '-T0']);
  return new PassThrough();
}

/** A stream that decompresses what is written to it. */
export function decompressor(kind: Compression): Duplex {
  if (kind === 'gzip') return createGunzip();
  if (kind === 'zstd') return zstdProcess(['-q', '-d', '-c']);
  return new PassThrough();
}

/**
 * `zstd ARGS` as a Duplex: writes go to its stdin, reads come from its stdout. A non-zero exit
 * (a corrupt frame, a truncated input) fails the stream with zstd's own message.
 */
function zstdProcess(args: string[]): Duplex {
  assertZstdAvailable();
  const child = spawn('zstd', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const stdin = child.stdin as Writable;
  const stdout = child.stdout as Readable;
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  const exited = new Promise<Error | undefined>((resolve) => {
    child.once('error', (err) => resolve(err));
    child.once('close', (code, signal) => resolve(code === 0 ? undefined : new Error(`zstd failed (${code ?? signal}): ${stderr.trim() || 'no message'}`)));
  });
  const duplex = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      if (stdin.write(chunk)) cb();
      else stdin.once('drain', () => cb());
    },
    final(cb) {
      stdin.end(cb);
    },
    read() {
      stdout.resume();
    },
    destroy(err, cb) {
      if (child.exitCode === null) child.kill('SIGTERM');
      cb(err);
    },
  });
  // EPIPE when zstd exits early (bad input): the exit status below says why.
  stdin.on('error', () => {});
  stdout.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) stdout.pause();
  });
  stdout.once('end', () => {
    void exited.then((err) => (err ? duplex.destroy(err) : duplex.push(null)));
  });
  return duplex;
}
