/**
 * @module bench/ocimirror
 * ocimirror as its own process (`node dist/ocimirror.mjs serve --config FILE`, the bundled build operators
 * run, made once per bench run), so its RSS is its own and the bench client never shares its event
 * loop. Start-up time is spawn → the "ocimirror listening" log line.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDaemon, waitFor, type Cleanup, type Daemon } from './proc.ts';
import type { BenchCert } from './tls-cert.ts';

const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The bench's one upstream; the cache's link rows name it. */
export const UPSTREAM_NAME = 'up';
/** The registry name the admin API knows that upstream by (clients reach it as the default upstream). */
export const BENCH_REGISTRY = 'bench.test';
export const BENCH_ADMIN_TOKEN = 'bench-admin-token-not-secret';

export interface OcimirrorProc {
  url: string;
  host: string;
  pid: number;
  dataDir: string;
  startupMs: number;
  daemon: Daemon;
}

export interface OcimirrorOptions {
  name: string;
  upstreamUrl: string;
  dataDir: string;
  workDir: string;
  /** Extra node flags, e.g. `--cpu-prof --cpu-prof-dir DIR` (one profile per thread: tsx's loader hooks have their own). */
  nodeArgs?: string[];
  /** Serve HTTPS with this certificate and key. */
  tls?: BenchCert;
  /** Client accounts (the config's `auth` block); unset = anonymous pulls. */
  auth?: BenchAuthConfig;
  /** Hosted registries (the config's `hosted` block), for pushes. */
  hosted?: { name: string }[];
  /** Registry names the upstream serves; default [BENCH_REGISTRY]. */
  registries?: string[];
}

export interface BenchAuthConfig {
  htpasswd: string;
  anonymous: 'none' | 'pull';
  rules: { accounts: string[]; repositories: string[]; roles: ('pull' | 'push' | 'admin')[] }[];
  tokenTTL?: string;
  service?: string;
}

let built = false;

/** Bundles src/ into dist/ocimirror.mjs (`npm run build`) once, so the bench measures the current sources. */
function build(): void {
  if (built) return;
  execFileSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'scripts/build.ts')], { stdio: 'inherit', cwd: PROJECT_ROOT });
  built = true;
}

/** Writes `<workDir>/<name>.yaml` for a mirror or a CLI command on `dataDir`; returns its path. */
export async function writeOcimirrorConfig(o: OcimirrorOptions): Promise<string> {
  await mkdir(o.dataDir, { recursive: true });
  const configFile = join(o.workDir, `${o.name}.yaml`);
  // JSON is YAML.
  await writeFile(configFile, JSON.stringify({
    listen: '127.0.0.1:0',
    storage: { path: o.dataDir },
    upstreams: [{ name: UPSTREAM_NAME, url: o.upstreamUrl, tagTTL: '1h', registries: o.registries ?? [BENCH_REGISTRY] }],
    defaultUpstream: UPSTREAM_NAME,
    admin: { token: BENCH_ADMIN_TOKEN },
    log: { level: 'info' },
    ...(o.tls ? { tls: { cert: o.tls.cert, key: o.tls.key } } : {}),
    ...(o.auth ? { auth: o.auth } : {}),
    ...(o.hosted ? { hosted: o.hosted } : {}),
  }, null, 2));
  return configFile;
}

/** `node [flags] dist/ocimirror.mjs ARGS`, as the image runs the CLI: the command and its arguments for bench/proc's `run`. */
export function ocimirrorCli(args: string[], nodeArgs: string[] = []): [string, string[]] {
  build();
  return [process.execPath, ['--max-semi-space-size=8', ...nodeArgs, join(PROJECT_ROOT, 'dist/ocimirror.mjs'), ...args]];
}

export async function startOcimirror(o: OcimirrorOptions, cleanup: Cleanup): Promise<OcimirrorProc> {
  build();
  const configFile = await writeOcimirrorConfig(o);
  const logFile = join(o.workDir, `${o.name}.log`);
  const started = performance.now();
  // The node flags the image and bin/ocimirror.js run it with.
  const daemon = startDaemon(process.execPath, ['--max-semi-space-size=8', ...(o.nodeArgs ?? []), join(PROJECT_ROOT, 'dist/ocimirror.mjs'), 'serve', '--config', configFile], logFile);
  cleanup.defer(o.name, () => daemon.stop());
  const url = await waitFor(o.name, daemon, () => /"url":"(https?:\/\/[^"]+)","upstreams"/.exec(readFileSync(logFile, 'utf8'))?.[1], 60_000, 2);
  return { url, host: new URL(url).host, pid: daemon.pid, dataDir: o.dataDir, startupMs: performance.now() - started, daemon };
}
