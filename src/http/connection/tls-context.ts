/**
 * @module http/connection/tls-context
 * The listener's certificate, key and client CA read from PEM files, and a watch that swaps them
 * into the running server when they change (cert-manager rewrites them in place) or when a config
 * reload names other files: new handshakes get the new certificate, open connections are untouched.
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import type { SecureContextOptions, Server as TlsServer } from 'node:tls';
import { createSecureContext } from 'node:tls';
import type { Logger } from '../../util/logger.ts';

export interface TlsFiles {
  cert: string;
  key: string;
  clientCA?: string | undefined;
}

/** Reads the files; throws when one is missing or the key does not match the certificate. */
export function loadTlsContext(files: TlsFiles): SecureContextOptions {
  const options: SecureContextOptions = {
    cert: readFileSync(files.cert),
    key: readFileSync(files.key),
    ...(files.clientCA ? { ca: readFileSync(files.clientCA) } : {}),
  };
  createSecureContext(options); // checks the pair now, not at the first handshake
  return options;
}

/** {@link loadTlsContext} with every problem by config key (a reload reports them all instead of throwing at the first). */
export function checkTlsFiles(files: TlsFiles): { context: SecureContextOptions | undefined; issues: string[] } {
  const issues: string[] = [];
  for (const key of ['cert', 'key', 'clientCA'] as const) {
    const file = files[key];
    if (file === undefined) continue;
    try {
      readFileSync(file);
    } catch (err) {
      issues.push(`tls.${key}: cannot read ${file}: ${(err as Error).message}`);
    }
  }
  if (issues.length > 0) return { context: undefined, issues };
  try {
    return { context: loadTlsContext(files), issues };
  } catch (err) {
    return { context: undefined, issues: [`tls: the certificate, key or client CA cannot be used: ${(err as Error).message}`] };
  }
}

/**
 * Polls the files' stat (a Kubernetes secret volume swaps a symlink, which fs.watch on the old
 * inode misses) and reloads on a change. A half-written pair fails to load and is retried at the
 * next change; the old certificate stays meanwhile.
 */
export function watchTlsFiles(server: TlsServer, files: TlsFiles, log: Logger, intervalMs = 2000): () => void {
  const paths = [files.cert, files.key, ...(files.clientCA ? [files.clientCA] : [])];
  const onChange = (cur: Stats, prev: Stats): void => {
    if (cur.mtimeMs === prev.mtimeMs && cur.ino === prev.ino && cur.size === prev.size) return;
    try {
      server.setSecureContext(loadTlsContext(files));
      log.info({ cert: files.cert }, 'TLS certificate reloaded');
    } catch (err) {
      log.warn({ cert: files.cert, err: (err as Error).message }, 'TLS certificate reload failed; keeping the previous one');
    }
  };
  for (const p of paths) watchFile(p, { interval: intervalMs }, onChange);
  return () => {
    for (const p of paths) unwatchFile(p, onChange);
  };
}

export interface TlsFollower {
  readonly files: TlsFiles;
  /** Serves `context` (loaded from `files` by the caller, so a bad pair is refused before) and watches `files` from now on. */
  switchTo(files: TlsFiles, context: SecureContextOptions): void;
  stop(): void;
}

/** {@link watchTlsFiles} whose files a config reload can change. */
export function followTlsFiles(server: TlsServer, files: TlsFiles, log: Logger, intervalMs?: number): TlsFollower {
  let current = files;
  let unwatch = watchTlsFiles(server, files, log, intervalMs);
  return {
    get files() {
      return current;
    },
    switchTo(next, context) {
      server.setSecureContext(context);
      unwatch();
      current = next;
      unwatch = watchTlsFiles(server, next, log, intervalMs);
      log.info({ cert: next.cert }, 'TLS certificate files changed by a config reload');
    },
    stop: () => unwatch(),
  };
}
