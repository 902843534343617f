/**
 * @module util/native-addon
 * Loads the native addon in native/sendfile (built by `npm run build:native`, and by `npm ci`'s
 * install script when a compiler is there), once. Only the composition root (mirror.ts) loads it,
 * and only with server.nativeAddon on; it hands the addon to the two parts that use it:
 * http/body/sendfile (sendfile(2) to clients) and cache/blobs/fill-writer (a fill's hash and temp-file
 * writes off the event loop). Where it is missing (not Linux, no compiler at install) or switched
 * off, both fall back to plain Node.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { packageRoot } from './package-root.ts';

/** The addon's interface (native/sendfile/sendfile.c and hash-write.c). */
export interface NativeAddon {
  start(socketFd: number, fileFd: number, offset: number, length: number, callback: (err: Error | null, sent: number) => void): object;
  cancel(handle: object): void;
  hasher(): object;
  hashWrite(hasher: object, fd: number, buffers: Buffer[], position: number, piece: number, callback: (err: NodeJS.ErrnoException | null) => void): void;
  digest(hasher: object): string;
}

let addon: NativeAddon | undefined;
let loadError: string | undefined;
let loaded = false;

/** The addon, or undefined when it cannot be loaded here ({@link nativeAddonError} says why). */
export function nativeAddon(): NativeAddon | undefined {
  if (loaded) return addon;
  loaded = true;
  if (process.platform !== 'linux') {
    loadError = `the native addon is built on Linux only, not ${process.platform}`;
    return undefined;
  }
  const root = packageRoot();
  const file = root && path.join(root, 'native', 'sendfile', 'build', 'Release', 'sendfile.node');
  if (!file || !existsSync(file)) {
    loadError = `the native addon is not built (npm run build:native)${file ? `: no ${file}` : ''}`;
    return undefined;
  }
  try {
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (err) {
    loadError = `the native addon failed to load: ${(err as Error).message}`;
  }
  return addon;
}

/** Why {@link nativeAddon} returns undefined; undefined when it loads. */
export function nativeAddonError(): string | undefined {
  nativeAddon();
  return loadError;
}
